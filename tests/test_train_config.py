"""The trainers' settings from the command line and --config: one flag per field, precedence, errors, round trip."""

import dataclasses

import pytest
import yaml
from test_train_subject import make_subject_folder

from smrabooth.cli import build_parser, main
from smrabooth.cli.common import config_from_args
from smrabooth.recipes import OFFICIAL, PAPER
from smrabooth.train.motion import MotionTrainConfig
from smrabooth.train.subject import SubjectTrainConfig

# a value other than the default for every setting: each one must reach the config through its flag
SUBJECT_FLAGS = {
    "name": (["--name", "ball"], "ball"), "recipe": (["--recipe", "paper"], "paper"),
    "steps": (["--steps", "7"], 7), "rank": (["--rank", "8"], 8), "alpha": (["--alpha", "3.5"], 3.5),
    "lr": (["--lr", "2e-3"], 2e-3), "resolution": (["--resolution", "96"], 96),
    "encoder": (["--encoder", "org/dino"], "org/dino"), "sura_weight": (["--sura-weight", "0.2"], 0.2),
    "sura_layer": (["--sura-layer", "1"], 1), "use_sura": (["--no-sura"], False), "use_mask": (["--no-mask"], False),
    "projector_width": (["--projector-width", "24"], 24), "layer_types": (["--layer-types", "q,ffn.2"], ("q", "ffn.2")),
    "shift": (["--shift", "3"], 3.0), "seed": (["--seed", "5"], 5),
    "gradient_checkpointing": (["--no-gradient-checkpointing"], False), "compile": (["--compile"], True),
    "cuda_graphs": (["--cuda-graphs"], True), "mixed_precision": (["--mixed-precision", "no"], "no"),
    "weight_decay": (["--weight-decay", "0"], 0.0), "max_grad_norm": (["--max-grad-norm", "0.5"], 0.5),
    "checkpoint_every": (["--checkpoint-every", "3"], 3), "validate_every": (["--validate-every", "0"], 0),
    "validation_prompt": (["--validation-prompt", "a V* ball"], "a V* ball"),
    "validation_frames": (["--validation-frames", "5"], 5), "validation_steps": (["--validation-steps", "4"], 4),
    "save_dtype": (["--save-dtype", "fp32"], "fp32"),
    "timestep_weight": (["--timestep-weight", "none"], "none"), "batch_size": (["--batch-size", "3"], 3),
    "gradient_accumulation": (["--gradient-accumulation", "2"], 2), "warmup_steps": (["--warmup-steps", "2"], 2),
    "warmup_factor": (["--warmup-factor", "0.5"], 0.5), "mask_rule": (["--mask-rule", "area"], "area"),
    "train_projector": (["--train-projector"], True), "expert": (["--expert", "low"], "low"),
    "lora_dtype": (["--lora-dtype", "fp32"], "fp32"), "timestep_rounding": (["--timestep-rounding", "none"], "none"),
    "resize_filter": (["--resize-filter", "bicubic"], "bicubic"),
    "encoder_resize": (["--encoder-resize", "antialias"], "antialias"),
    "memory": (["--memory", "low"], "low"), "still_frames": (["--still-frames", "5"], 5),
    "vae_dtype": (["--vae-dtype", "bf16"], "bf16"),
}
MOTION_FLAGS = {
    "recipe": (["--recipe", "paper"], "paper"), "steps": (["--steps", "7"], 7), "rank": (["--rank", "8"], 8),
    "alpha": (["--alpha", "3.5"], 3.5), "lr": (["--lr", "2e-3"], 2e-3), "frames": (["--frames", "33"], 33),
    "height": (["--height", "64"], 64), "width": (["--width", "96"], 96), "fps": (["--fps", "8"], 8.0),
    "loop": (["--loop"], True), "flow_model": (["--flow-model", "org/raft"], "org/raft"),
    "flow_iters": (["--flow-iters", "3"], 3), "use_mora": (["--no-mora"], False),
    "mora_weight": (["--mora-weight", "0.5"], 0.5), "window": (["--window", "4"], 4),
    "window_stride": (["--window-stride", "1"], 1), "drop_frames": (["--drop-frames", "3"], 3),
    "layer_types": (["--layer-types", "v,o"], ("v", "o")), "shift": (["--shift", "3"], 3.0), "seed": (["--seed", "5"], 5),
    "gradient_checkpointing": (["--no-gradient-checkpointing"], False),
    "vae_checkpointing": (["--vae-checkpointing", "frame"], "frame"),
    "vae_store_frames": (["--vae-store-frames", "2"], 2), "flow_chunk": (["--flow-chunk", "4"], 4),
    "compile": (["--compile"], True), "mixed_precision": (["--mixed-precision", "bf16"], "bf16"),
    "weight_decay": (["--weight-decay", "0"], 0.0), "max_grad_norm": (["--max-grad-norm", "0.5"], 0.5),
    "checkpoint_every": (["--checkpoint-every", "3"], 3), "validate_every": (["--validate-every", "0"], 0),
    "validation_prompt": (["--validation-prompt", "S*"], "S*"), "validation_steps": (["--validation-steps", "4"], 4),
    "save_dtype": (["--save-dtype", "fp16"], "fp16"),
    "timestep_weight": (["--timestep-weight", "none"], "none"), "batch_size": (["--batch-size", "3"], 3),
    "gradient_accumulation": (["--gradient-accumulation", "2"], 2), "warmup_steps": (["--warmup-steps", "2"], 2),
    "warmup_factor": (["--warmup-factor", "0.5"], 0.5), "spatial_steps": (["--spatial-steps", "4"], 4),
    "temporal_steps": (["--temporal-steps", "6"], 6), "spatial_layer_types": (["--spatial-layer-types", "q,k"],
                                                                               ("q", "k")),
    "spatial_rank": (["--spatial-rank", "4"], 4), "spatial_alpha": (["--spatial-alpha", "2"], 2.0),
    "debiased": (["--no-debiased"], False), "debias_beta": (["--debias-beta", "0.5"], 0.5),
    "window_wrap": (["--window-wrap", "fit"], "fit"), "flow_units": (["--flow-units", "pixels"], "pixels"),
    "expert": (["--expert", "high"], "high"),
    "clip_timing": (["--clip-timing", "resample"], "resample"),
    "mora_frame_range": (["--mora-frame-range", "matched"], "matched"), "mora_decode": (["--mora-decode", "whole"], "whole"),
    "mora_reference": (["--mora-reference", "decoded"], "decoded"), "mora_max_sigma": (["--mora-max-sigma", "0.5"], 0.5),
    "lora_dtype": (["--lora-dtype", "fp32"], "fp32"), "timestep_rounding": (["--timestep-rounding", "none"], "none"),
    "resize_filter": (["--resize-filter", "bicubic"], "bicubic"), "memory": (["--memory", "max"], "max"),
    "vae_dtype": (["--vae-dtype", "fp16"], "fp16"),
}


def parse(command, *argv):
    return build_parser().parse_args([command, *map(str, argv)])


@pytest.mark.parametrize("command, cls, table", [("train-subject", SubjectTrainConfig, SUBJECT_FLAGS),
                                                 ("train-motion", MotionTrainConfig, MOTION_FLAGS)])
def test_every_setting_has_a_flag(tmp_path, command, cls, table):
    # every field but the model (a model flag), the run's folders (below) and dicts is in the table
    settable = {f.name for f in dataclasses.fields(cls)} - {"model", "data", "out", "cache_dir", "extra"}
    assert settable == set(table), settable ^ set(table)
    data = tmp_path / "data"
    data.mkdir()
    argv = ["--model", "m", "--data", data, "--out", tmp_path / "run", "--cache-dir", tmp_path / "cache"]
    argv += [a for flags, _ in table.values() for a in flags]
    cfg = config_from_args(cls, parse(command, *argv), ("model", "data", "out"))
    for name, (flags, value) in table.items():
        assert getattr(cfg, name) == value, (name, flags)
    assert (cfg.model, cfg.data, cfg.cache_dir) == ("m", str(data), str(tmp_path / "cache"))
    # and with no flag each one is the default recipe's (official) or the dataclass's default
    cfg = config_from_args(cls, parse(command, "--model", "m", "--data", data, "--out", tmp_path / "run"))
    assert cfg == cls.from_recipe("official", model="m", data=str(data), out=str(tmp_path / "run")).validate()
    stage = OFFICIAL.subject if cls is SubjectTrainConfig else OFFICIAL.motion
    assert (cfg.recipe, cfg.rank, cfg.layer_types) == ("official", stage.rank, stage.layer_types)


def test_old_flag_spellings_still_work(tmp_path):
    args = parse("train-motion", "--model", "m", "--data", tmp_path, "--out", tmp_path / "r", "--no-mora",
                 "--no-gradient-checkpointing", "--compile", "--flow-chunk", "0")
    cfg = config_from_args(MotionTrainConfig, args)
    assert (cfg.use_mora, cfg.gradient_checkpointing, cfg.compile, cfg.flow_chunk) == (False, False, True, None)
    args = parse("train-subject", "--model", "m", "--data", tmp_path, "--out", tmp_path / "r", "--no-sura",
                 "--no-mask", "--cuda-graphs")
    cfg = config_from_args(SubjectTrainConfig, args)
    assert (cfg.use_sura, cfg.use_mask, cfg.cuda_graphs, cfg.compile) == (False, False, True, True)


def test_flags_override_the_file_which_overrides_the_recipe(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text(f"model: m\ndata: {tmp_path}\nsteps: 7\nrank: 8\nlayer_types: [q, k]\nuse_sura: false\n")
    cfg = config_from_args(SubjectTrainConfig, parse("train-subject", "--config", run, "--steps", "9",
                                                     "--out", tmp_path / "o"))
    assert (cfg.steps, cfg.rank, cfg.layer_types, cfg.use_sura) == (9, 8, ("q", "k"), False)  # flag, file, file
    assert (cfg.lr, cfg.sura_layer, cfg.recipe) == (OFFICIAL.subject.lr, OFFICIAL.subject.sura_layer, "official")
    paper = config_from_args(SubjectTrainConfig, parse("train-subject", "--config", run, "--recipe", "paper",
                                                       "--out", tmp_path / "o"))
    assert (paper.steps, paper.sura_layer, paper.recipe) == (7, PAPER.subject.sura_layer, "paper")  # the recipe's
    assert (cfg.model, cfg.data) == ("m", str(tmp_path))  # the file may name the model and data


@pytest.mark.parametrize("text, message", [
    ("steps: ten\n", "run.yaml: steps: 'ten' is not a whole number"),
    ("stpes: 10\n", "run.yaml: unknown setting(s) stpes"),
    ("recipe: nope\n", "unknown recipe 'nope': choose from official, paper"),
    ("use_sura: maybe\n", "run.yaml: use_sura: 'maybe' is not true or false"),
    ("- steps\n", "must hold a mapping"),
])
def test_config_file_errors_are_one_line(tmp_path, capsys, text, message):
    (tmp_path / "run.yaml").write_text(text)
    # --model names nothing that exists: the file is read and rejected before any model is looked at
    assert main(["train-subject", "--model", str(tmp_path / "none"), "--data", str(tmp_path), "--out",
                 str(tmp_path / "o"), "--config", str(tmp_path / "run.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_required_settings(tmp_path, capsys):
    assert main(["train-motion", "--model", "m", "--out", str(tmp_path / "o")]) == 2
    assert "--data is required (as a flag or in --config)" in capsys.readouterr().err


def test_run_config_yaml_is_accepted_back(tiny_model_dir, tmp_path):
    """Train, then train again from the first run's config.yaml with another --out: the same settings."""
    data = make_subject_folder(tmp_path / "subject")
    first = tmp_path / "first"
    assert main(["train-subject", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(first),
                 "--steps", "1", "--rank", "2", "--alpha", "2", "--resolution", "32", "--no-sura", "--dtype", "fp32",
                 "--layer-types", "q,ffn.0", "--save-dtype", "fp32", "--cache-dir", str(tmp_path / "cache"),
                 "--quiet"]) == 0
    saved = yaml.safe_load((first / "config.yaml").read_text())
    assert saved["recipe"] == "official" and saved["layer_types"] == ["q", "ffn.0"] and saved["sura_weight"] == 0.05
    second = tmp_path / "second"
    assert main(["train-subject", "--config", str(first / "config.yaml"), "--out", str(second), "--dtype", "fp32",
                 "--quiet"]) == 0
    again = yaml.safe_load((second / "config.yaml").read_text())
    assert again == {**saved, "out": str(second)}
