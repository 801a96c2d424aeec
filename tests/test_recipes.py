"""One source of defaults: the recipes hold the method's numbers; configs, presets and CLI defaults read them."""

import dataclasses

import pytest

from smrabooth.recipes import DEFAULT_RECIPE, PAPER, RECIPES, MotionRecipe, SamplerRecipe, SubjectRecipe, get_recipe
from smrabooth.sampling import PRESETS, GenerateConfig
from smrabooth.schedules import InjectionSchedule, shifted_linear_sigmas, t_point_for_sigmas, t_point_sigma
from smrabooth.train.motion import MotionTrainConfig
from smrabooth.train.subject import SubjectTrainConfig


def test_paper_recipe_is_the_papers_text():
    """The numbers of the paper (its sections 4.1 and supplementary 1), written out once more here on purpose:
    a change to the recipe must be a deliberate change to this test too."""
    s, m, g = PAPER.subject, PAPER.motion, PAPER.sampler
    assert (s.steps, s.rank, s.alpha, s.lr, s.resolution, s.shift) == (300, 32, 32.0, 1e-4, 512, 5.0)
    assert (s.sura_weight, s.sura_layer, s.projector_width, s.encoder) == (0.05, 0, 2048, "facebook/dinov2-giant")
    assert s.layer_types == m.layer_types == ("q", "k", "v", "o", "ffn.0", "ffn.2")
    assert (m.steps, m.rank, m.alpha, m.lr, m.frames, m.height, m.width, m.fps) == (400, 64, 64.0, 1e-4, 49, 320,
                                                                                      576, 15.0)
    assert (m.mora_weight, m.window, m.window_stride, m.drop_frames) == (1.0, 6, 2, 5)
    assert (g.steps, g.shift, g.guidance, g.frames, g.height, g.width, g.fps) == (50, 5.0, 5.0, 49, 480, 832, 15.0)
    assert (g.t_point, g.subject_scale_early, g.subject_scale, g.motion_scale) == (15, 0.5, 1.0, 1.0)
    assert (g.subject_layers, g.motion_layers) == (("q", "k", "ffn.0"), ("v", "o", "ffn.0", "ffn.2"))


def test_recipes_are_frozen_and_named():
    assert RECIPES["paper"] is PAPER and get_recipe("paper") is PAPER
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER.subject.rank = 16
    from smrabooth.errors import SmraboothError

    with pytest.raises(SmraboothError, match="unknown recipe 'nope'.*paper"):
        get_recipe("nope")


@pytest.mark.parametrize("recipe_cls, config_cls, stage", [(SubjectRecipe, SubjectTrainConfig, "subject"),
                                                           (MotionRecipe, MotionTrainConfig, "motion")])
def test_trainer_config_defaults_come_from_the_recipe(recipe_cls, config_cls, stage):
    """The plain config is the default recipe's (official); from_recipe gives any recipe's values."""
    config_fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for name in RECIPES:
        recipe = getattr(RECIPES[name], stage)
        config = config_cls.from_recipe(name)
        for f in dataclasses.fields(recipe_cls):
            assert f.name in config_fields, f"{stage} recipe field {f.name} is not a {config_cls.__name__} field"
            assert getattr(config, f.name) == getattr(recipe, f.name), (name, f.name)
        assert config.recipe == name
    default = getattr(RECIPES[DEFAULT_RECIPE], stage)
    assert all(getattr(config_cls(), f.name) == getattr(default, f.name) for f in dataclasses.fields(recipe_cls))
    assert config_cls().recipe == DEFAULT_RECIPE == "official"


def test_presets_and_generate_config_come_from_the_recipe():
    assert set(PRESETS) == set(RECIPES)
    config = GenerateConfig(**PRESETS["paper"]).validate()
    g = PAPER.sampler
    for f in dataclasses.fields(SamplerRecipe):
        if f.name != "t_point":
            assert getattr(config, f.name) == getattr(g, f.name), f.name
    assert (config.reference_t_point, config.reference_steps, config.reference_shift) == (g.t_point, g.steps, g.shift)
    assert config.t_point is None  # mapped onto the run's own steps
    # the injection's defaults are the paper's even without the preset
    plain = GenerateConfig()
    assert (plain.subject_scale_early, plain.subject_layers, plain.reference_t_point) == (0.5, g.subject_layers, 15)
    assert InjectionSchedule() == InjectionSchedule(g.t_point, g.subject_scale_early, g.subject_scale, g.motion_scale)


def test_t_point_maps_against_the_given_reference_schedule():
    # paper: step 15 of 50 at shift 5 -> s = 1 - 15/50 = 0.7, shifted 5 * 0.7 / (1 + 4 * 0.7) = 3.5 / 3.8
    assert t_point_sigma() == pytest.approx(3.5 / 3.8, abs=1e-12)
    # the same step of a 50-step schedule with shift 1 is sigma 0.7 itself
    assert t_point_sigma(15, steps=50, shift=1.0) == pytest.approx(0.7, abs=1e-12)
    # a 10-step shift-5 run: sigmas 1, .978, .952, .921, .882, .833, .769, .682, .556, .357
    run = shifted_linear_sigmas(10, 5.0)
    assert t_point_for_sigmas(run) == 3  # .921 is nearest .9211
    assert t_point_for_sigmas(run, 15, steps=50, shift=1.0) == 7  # .682 is nearest .7
    # through GenerateConfig: the reference fields choose the schedule the switch is read against
    from smrabooth.sampling import schedule_for

    cfg = GenerateConfig(steps=10, reference_t_point=15, reference_steps=50, reference_shift=1.0)
    assert schedule_for(cfg, list(run)).t_point == 7
    assert schedule_for(GenerateConfig(steps=10), list(run)).t_point == 3


@pytest.mark.parametrize("recipe", [None, "official", "paper"])
def test_cli_defaults_and_help_come_from_the_recipe(recipe, tmp_path):
    """A flag left out takes the --recipe's value (official when none is named); a flag given wins; the help
    shows the default, or each recipe's where they differ."""
    from smrabooth.cli import build_parser
    from smrabooth.cli.common import config_from_args

    parser = build_parser()
    base = ["--model", "m", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    base += ["--recipe", recipe] if recipe else []
    expected = RECIPES[recipe or DEFAULT_RECIPE]
    for command, cls, stage in (("train-subject", SubjectTrainConfig, "subject"),
                                ("train-motion", MotionTrainConfig, "motion")):
        cfg = config_from_args(cls, parser.parse_args([command, *base]))
        assert cfg.recipe == expected.name
        sub = parser._subparsers._group_actions[0].choices[command]
        helps = {a.dest: a.help for a in sub._actions}
        for f in dataclasses.fields(getattr(expected, stage)):
            value = getattr(getattr(expected, stage), f.name)
            assert getattr(cfg, f.name) == value, (command, f.name)
            shown = ",".join(value) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else value
            shown = {True: "on", False: "off"}.get(value, shown) if isinstance(value, bool) else shown
            others = {getattr(getattr(r, stage), f.name) for r in RECIPES.values()}
            if len(others) == 1:
                assert helps[f.name].endswith(f"(default: {shown})"), (command, f.name, helps[f.name])
            else:
                assert f"{expected.name} {shown}" in helps[f.name], (command, f.name, helps[f.name])
        given = config_from_args(cls, parser.parse_args([command, *base, "--steps", "7", "--shift", "3"]))
        assert (given.steps, given.shift) == (7, 3.0)
