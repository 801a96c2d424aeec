"""One set of defaults: a LoRA records the recipe it was trained with, and `generate` without --preset samples with
that recipe's preset (two recipes or none: the default recipe's, said in one line); without LoRAs it keeps stock
WanPipeline's defaults. (`reproduce` passes the preset of its --recipe: tests/test_reproduce.py.)"""

import pytest
from test_train_motion import make_motion_folder
from test_train_subject import make_subject_folder

from smrabooth.cli import build_parser, main
from smrabooth.cli.generate import config_from_args, preset_for
from smrabooth.lora.files import load_lora, recorded_recipe, save_lora
from smrabooth.recipes import DEFAULT_RECIPE, RECIPES
from smrabooth.sampling import PRESETS, GenerateConfig


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    """A subject and a motion LoRA trained (1 step, tiny model) with each recipe."""
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train.motion import MotionTrainConfig, train_motion
    from smrabooth.train.subject import SubjectTrainConfig, train_subject

    root = tmp_path_factory.mktemp("recipes")
    make_subject_folder(root / "subject")
    make_motion_folder(root / "motion")
    pipe = build_tiny_wan_pipeline()
    common = {"model": "tiny", "steps": 1, "rank": 2, "alpha": 2, "gradient_checkpointing": False, "batch_size": 1,
              "save_dtype": "fp32", "cache_dir": str(root / "cache")}
    out = {}
    for recipe in RECIPES:
        s = SubjectTrainConfig.from_recipe(recipe, data=str(root / "subject"), out=str(root / f"s-{recipe}"),
                                           resolution=32, use_sura=False, **common)
        m = MotionTrainConfig.from_recipe(recipe, data=str(root / "motion"), out=str(root / f"m-{recipe}"),
                                          frames=5, height=32, width=32, use_mora=False, **common)
        out[recipe] = (train_subject(s, pipe, progress=False), train_motion(m, pipe, progress=False))
    return out


def generate_args(*argv):
    return build_parser().parse_args(["generate", "--model", "m", "--prompt", "a V* ball doing S*", "--out", "v.mp4",
                                      *map(str, argv)])


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_generate_samples_with_the_recipe_its_loras_were_trained_with(loras, recipe):
    subject, motion = loras[recipe]
    assert recorded_recipe(subject) == recorded_recipe(motion) == recipe == load_lora(motion).info["recipe"]
    for argv, which in ((["--subject-lora", subject, "--motion-lora", motion], "subject and motion LoRAs were"),
                        (["--motion-lora", motion], "motion LoRA was")):
        args = generate_args(*argv)
        why = f"preset {recipe}: the recipe the {which} trained with (--preset to choose another)"
        assert preset_for(args) == (recipe, why)
        assert config_from_args(args) == config_from_args(generate_args(*argv, "--preset", recipe))
    other = next(r for r in RECIPES if r != recipe)  # --preset wins, and says nothing
    args = generate_args("--subject-lora", subject, "--preset", other)
    assert preset_for(args) == (other, None) and config_from_args(args).shift == PRESETS[other]["shift"]


def test_loras_of_two_recipes_or_of_none_get_the_default_recipe_and_no_lora_gets_stock_defaults(loras, tmp_path):
    args = generate_args("--subject-lora", loras["paper"][0], "--motion-lora", loras["official"][1])
    why = ("the subject LoRA was trained with the paper recipe, the motion LoRA with official: preset official "
           "(--preset to choose)")
    assert preset_for(args) == (DEFAULT_RECIPE, why)
    foreign = load_lora(loras["paper"][0])
    foreign.info.pop("recipe")  # e.g. a LoRA trained elsewhere, or converted from ComfyUI
    save_lora(tmp_path / "foreign.safetensors", foreign)
    args = generate_args("--subject-lora", tmp_path / "foreign.safetensors")
    assert preset_for(args) == (DEFAULT_RECIPE, "preset official: the LoRAs record no recipe (--preset to choose another)")
    assert config_from_args(args).shift == PRESETS[DEFAULT_RECIPE]["shift"]
    # a recorded recipe wins over a LoRA that records none
    assert preset_for(generate_args("--subject-lora", tmp_path / "foreign.safetensors", "--motion-lora",
                                    loras["paper"][1]))[0] == "paper"
    # no LoRA: no preset, stock WanPipeline's defaults (tests/test_cli.py: its frames, exactly)
    args = generate_args()
    assert preset_for(args) == (None, None)
    assert config_from_args(args) == GenerateConfig(prompt="a V* ball doing S*").validate()


def test_generate_says_which_preset_it_used(loras, tiny_model_dir, tmp_path, capsys):
    subject, motion = loras[DEFAULT_RECIPE]
    assert main(["generate", "--model", str(tiny_model_dir), "--subject-lora", str(subject), "--motion-lora",
                 str(motion), "--prompt", "a V* ball doing S*", "--frames", "5", "--height", "32", "--width", "32",
                 "--steps", "2", "--dtype", "fp32", "--out", str(tmp_path / "v.mp4")]) == 0
    out = capsys.readouterr().out
    assert f"preset {DEFAULT_RECIPE}: the recipe the subject and motion LoRAs were trained with" in out
    assert f"15 fps, preset {DEFAULT_RECIPE})" in out.splitlines()[-1]
