"""One settings mechanism for every command: each command's settings flags are made from a settings dataclass
(cli/common.py add_config_arguments) and read back by config_from_args, so a default, a help text, a choice list and
a check live once, on the field. The walk below fails on a flag written by hand beside its field (a second default,
help or choice list that can drift), on a field whose flag went missing, and on a help text whose default is not
what the command runs with."""

import argparse
import dataclasses
import math
import re

import pytest

from smrabooth.cli import OneLineParser, build_parser, main
from smrabooth.cli.common import add_config_arguments
from smrabooth.metrics.runner import EvalSettings
from smrabooth.recipes import DEFAULT_RECIPE
from smrabooth.reproduce import ReproduceConfig
from smrabooth.sampling import PRESETS, GenerateConfig
from smrabooth.train.motion import MotionTrainConfig
from smrabooth.train.subject import SubjectTrainConfig
from smrabooth.train.unet import UnetMotionConfig, UnetSubjectConfig
from smrabooth_sprites.experiment import DEMO_SETTINGS, ExperimentSettings
from smrabooth_ui.cli import UiSettings

MODEL = {"model", "backbone", "dtype", "vae_dtype", "device", "offline"}  # add_model_args
# every command with settings: its settings classes, and the flags it writes itself (not settings of the run)
COMMANDS = {
    "generate": ([GenerateConfig], MODEL | {"subject_lora", "motion_lora", "preset", "config", "out", "save_frames"}),
    "train-subject": ([SubjectTrainConfig, UnetSubjectConfig], MODEL | {"config", "resume", "overwrite", "quiet"}),
    "train-motion": ([MotionTrainConfig, UnetMotionConfig], MODEL | {"config", "resume", "overwrite", "quiet"}),
    "evaluate": ([EvalSettings], {"videos", "manifest", "out", "method", "subject_images", "reference_video",
                                  "prompts", "metrics", "offline", "report_videos"}),
    "reproduce": ([ReproduceConfig], {"stage", "shard", "dry_run", "gpus"}),
    "demo": ([ExperimentSettings], {"out", "overwrite", "seed", "subject", "motion"}),
    "bench sprites": ([ExperimentSettings], {"out", "overwrite", "subjects", "motions", "seeds", "variants",
                                             "no_subject_stills", "resume", "jobs"}),
    "ui": ([UiSettings], set()),
}
# commands whose flags are all the command's own (inputs, outputs, actions): no settings dataclass
NO_SETTINGS = {"prepare-subject", "prepare-motion", "prompts", "lora info", "lora convert", "tiny-model",
               "study build", "study tally", "sprites sample", "sprites subject", "sprites motion"}


def commands(parser, prefix=()):
    """(name, parser) of every leaf subcommand: 'generate', 'lora info', 'bench sprites'."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(prefix), parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from commands(sub, (*prefix, name))


def shown(value) -> str:
    """A value as --help shows it, written here apart from the code that writes the help."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def flagged_fields(cls):
    hints = __import__("typing").get_type_hints(cls)
    return {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("cli", True) and hints[f.name] is not dict}


def problems(parser, classes, own: set[str]) -> list[str]:
    """What does not come from the settings dataclasses: every option is a field's generated flag (no default of
    its own, the field's name and choices, a type that matches its annotation) or one of the command's `own`."""
    out = []
    made = [src[0] for src in getattr(parser, "settings_sources", [])]
    if made != classes:
        out.append(f"settings made from {[c.__name__ for c in made]}, expected {[c.__name__ for c in classes]}")
    fields = {}
    for cls in classes:
        for name, f in flagged_fields(cls).items():
            fields.setdefault(name, (cls, f))
    seen = set()
    for action in parser._actions:
        if action.dest == "help":
            continue
        if action.dest not in fields:
            if action.dest not in own:
                out.append(f"{action.option_strings}: neither a settings field nor one of the command's own flags")
            continue
        cls, f = fields[action.dest]
        seen.add(action.dest)
        flag = "--" + (f.metadata.get("flag") or f.name).replace("_", "-")
        if action.default is not argparse.SUPPRESS:
            out.append(f"{flag}: a default of its own ({action.default!r}) beside {cls.__name__}.{f.name}'s")
        if flag not in action.option_strings:
            out.append(f"{cls.__name__}.{f.name}: flag {action.option_strings}, expected {flag}")
        choices = f.metadata.get("choices")
        if list(action.choices or []) != list(choices or []):
            out.append(f"{flag}: choices {action.choices} but {cls.__name__}.{f.name} has {choices}")
        kind = re.sub(r"\s*\|\s*None", "", str(f.type))
        if kind in ("int", "float") and getattr(action.type, "__name__", None) != kind:
            out.append(f"{flag}: parsed as {getattr(action.type, '__name__', action.type)}, the field is {kind}")
        if kind == "bool" and not isinstance(action, argparse.BooleanOptionalAction):
            out.append(f"{flag}: not a --flag/--no-flag pair, the field is a bool")
    for name in set(fields) - seen:
        out.append(f"{fields[name][0].__name__}.{name} has no flag")
    return out


def test_every_command_is_listed():
    names = {name for name, _ in commands(build_parser())}
    assert names == set(COMMANDS) | NO_SETTINGS, names ^ (set(COMMANDS) | NO_SETTINGS)
    for name, parser in commands(build_parser()):
        if name in NO_SETTINGS:
            assert not getattr(parser, "settings_sources", None), name


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_settings_flag_is_its_fields(command):
    parser = dict(commands(build_parser()))[command]
    classes, own = COMMANDS[command]
    assert problems(parser, classes, own) == []


def resolve(command, tmp_path):
    """The settings `command` runs with when no settings flag is given, through the command's own function."""
    from smrabooth.cli import evaluate, generate, reproduce, train
    from smrabooth_sprites import cli as sprites_cli
    from smrabooth_ui import cli as ui_cli

    parse = build_parser().parse_args
    if command == "generate":
        return generate.config_from_args(parse(["generate", "--model", "m", "--out", "v.mp4"]))
    if command.startswith("train-"):
        kind = command.removeprefix("train-")
        return train.resolve_train_config(kind, parse([command, "--model", "m", "--data", str(tmp_path), "--out",
                                                       str(tmp_path / "run")]))
    if command == "evaluate":
        return evaluate.settings_from_args(parse(["evaluate", "--videos", "v.mp4", "--out", str(tmp_path)]))
    if command == "reproduce":
        return reproduce.config_from_args(parse(["reproduce", "--data", "d", "--model", "m", "--out", "o"]))
    if command == "ui":
        return ui_cli.settings_from_args(parse(["ui"]))
    argv = ["demo"] if command == "demo" else ["bench", "sprites", "--out", str(tmp_path)]
    return sprites_cli.settings_from_args(parse(argv))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_default_each_help_shows_is_what_the_command_runs_with(command, tmp_path):
    parser = dict(commands(build_parser()))[command]
    config = resolve(command, tmp_path)
    assert type(config) is COMMANDS[command][0][0]
    checked = 0
    for action in parser._actions:
        if action.dest not in flagged_fields(type(config)):
            continue
        value = shown(getattr(config, action.dest))
        found = re.search(r".*\(default: (.*)\)$", action.help, re.S)  # the last one: the one made from the field
        if found is None:  # a setting a run is given (--data, --out): no default to show
            assert flagged_fields(type(config))[action.dest].default == "", action.option_strings
            continue
        text = " ".join(found.group(1).split())
        if text.startswith("the recipe's: "):  # the trainers: one value per recipe, the default recipe's runs
            assert f"{DEFAULT_RECIPE} {value}" in text, (action.option_strings, text, value)
        else:
            assert text.split("; ")[0] == " ".join(value.split()), (action.option_strings, text, value)
        checked += 1
    assert checked >= 8


def test_a_planted_drift_is_found():
    """A settings flag written by hand beside its field (a default, a name, a choice list or a type of its own)."""
    own = {"out"}

    def parser(skip=(), extra=()):
        p = OneLineParser(prog="x")
        add_config_arguments(p, GenerateConfig, skip=skip, presets=PRESETS)
        p.add_argument("--out")
        for args, kwargs in extra:
            p.add_argument(*args, **kwargs)
        return p

    assert problems(parser(), [GenerateConfig], own) == []
    found = problems(parser(skip={"steps"}, extra=[(["--steps"], {"type": int, "default": 40})]), [GenerateConfig],
                     own)
    assert found == ["--steps: a default of its own (40) beside GenerateConfig.steps's"]
    found = problems(parser(skip={"scheduler"}, extra=[(["--scheduler"], {"choices": ["euler"],
                                                                          "default": argparse.SUPPRESS})]),
                     [GenerateConfig], own)
    assert found == ["--scheduler: choices ['euler'] but GenerateConfig.scheduler has ('euler', 'unipc')"]
    found = problems(parser(skip={"guidance"}, extra=[(["--guidance"], {"type": int, "default": argparse.SUPPRESS})]),
                     [GenerateConfig], own)
    assert found == ["--guidance: parsed as int, the field is float"]
    found = problems(parser(skip={"fps"}, extra=[(["--frame-rate"], {"dest": "fps", "type": float,
                                                                      "default": argparse.SUPPRESS})]),
                     [GenerateConfig], own)
    assert found == ["GenerateConfig.fps: flag ['--frame-rate'], expected --fps"]
    assert problems(parser(skip={"seed"}), [GenerateConfig], own) == ["GenerateConfig.seed has no flag"]
    assert problems(parser(extra=[(["--seeds"], {"type": int})]), [GenerateConfig], own) == [
        "['--seeds']: neither a settings field nor one of the command's own flags"]
    # and the walk over the real commands reads the same sources the commands were built from
    assert dict(commands(build_parser()))["demo"].get_default("settings_defaults") is DEMO_SETTINGS


# ---------------------------------------------------------------- generate --config
def test_generate_config_file_under_flags_over_the_preset(tmp_path):
    from smrabooth.cli.generate import config_from_args

    path = tmp_path / "gen.yaml"
    path.write_text("prompt: a red ball\nsteps: 7\nguidance: 3.5\nseed: 11\ncompile: true\nshift: 2\n"
                    "subject_layers: [q, k]\n")
    args = build_parser().parse_args(["generate", "--model", "m", "--out", "v.mp4", "--preset", "paper",
                                      "--config", str(path), "--steps", "9", "--no-compile"])
    config = config_from_args(args)
    # the flags win over the file, the file over the preset, the preset over the stock defaults
    assert (config.steps, config.compile) == (9, False)
    assert (config.prompt, config.guidance, config.seed, config.shift, config.subject_layers) == (
        "a red ball", 3.5, 11, 2.0, ("q", "k"))
    paper = PRESETS["paper"]
    assert (config.frames, config.subject_scale_early, config.scheduler) == (
        paper["frames"], paper["subject_scale_early"], paper["scheduler"])
    assert config.width == paper.get("width", GenerateConfig().width) and config.negative_prompt == \
        paper.get("negative_prompt")
    # without the flag the file's value holds; without the file, the preset's
    assert config_from_args(build_parser().parse_args(["generate", "--model", "m", "--out", "v.mp4", "--preset",
                                                       "paper", "--config", str(path)])).steps == 7
    assert config_from_args(build_parser().parse_args(["generate", "--model", "m", "--out", "v.mp4", "--preset",
                                                       "paper"])).steps == paper["steps"]


def test_generate_config_file_errors_name_the_file_or_the_flag(tmp_path, capsys):
    path = tmp_path / "gen.yaml"
    path.write_text("prompt: a dog\nsteps: 7\n")
    base = ["generate", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "v.mp4"), "--config", str(path)]
    assert main([*base, "--frames", "10"]) == 2  # a flag over a good file
    err = capsys.readouterr().err
    assert "--frames 10 is not 4k+1" in err and len(err.strip().splitlines()) == 1
    path.write_text("prompt: a dog\nsteps: 1" + "0" * 400 + "\n")
    assert main([*base, "--frames", "9"]) == 2  # a bad key in the file, the flag fine
    err = capsys.readouterr().err
    assert "--steps 100... (401 digits): must be a whole number in [1, 1000]" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- bad values: one line per command
BIG = "1" + "0" * 400
BAD = {
    "generate": (["generate", "--model", "m", "--prompt", "a dog", "--out", "{tmp}/v.mp4"],
                 [(["--guidance", "nan"], "--guidance nan: must be a finite number"),
                  (["--steps", BIG], "--steps 100... (401 digits): must be a whole number"),
                  (["--scheduler", "ddim"], "invalid choice: 'ddim'")]),
    "train-subject": (["train-subject", "--model", "m", "--data", "{tmp}", "--out", "{tmp}/run"],
                      [(["--lr", "nan"], "--lr nan: must be a finite number"),
                       (["--steps", BIG], "--steps 100... (401 digits)"),
                       (["--mask-rule", "round"], "invalid choice: 'round'")]),
    "train-motion": (["train-motion", "--model", "m", "--data", "{tmp}", "--out", "{tmp}/run"],
                     [(["--mora-weight", "nan"], "--mora-weight nan"),
                      (["--frames", BIG], "--frames 100... (401 digits)"),
                      (["--clip-timing", "middle"], "invalid choice: 'middle'")]),
    "evaluate": (["evaluate", "--videos", "{tmp}/v.mp4", "--out", "{tmp}/ev"],
                 [(["--mf-box", "0,0,nan,9"], "--mf-box must be x0,y0,x1,y1 in pixels"),
                  (["--batch-size", BIG], "--batch-size 100... (401 digits)"),
                  (["--tracker", "raft"], "invalid choice: 'raft'")]),
    "reproduce": (["reproduce", "--data", "{tmp}", "--model", "m", "--out", "{tmp}/r", "--dry-run"],
                  [(["--seeds", "0,nan"], "--seeds '0,nan': expected comma-separated integers"),
                   (["--per-pair", BIG], "--per-pair 100... (401 digits)"),
                   (["--stage", "tables"], "invalid choice: 'tables'")]),
    "demo": (["demo", "--out", "{tmp}/d"],
             [(["--guidance", "nan"], "--guidance nan: must be a finite number"),
              (["--subject-steps", BIG], "--subject-steps 100... (401 digits)"),
              (["--recipe", "dreambooth"], "invalid choice: 'dreambooth'")]),
    "bench sprites": (["bench", "sprites", "--out", "{tmp}/b"],
                      [(["--lr", "nan"], "--lr nan: must be a finite number"),
                       (["--gen-steps", BIG], "--gen-steps 100... (401 digits)"),
                       (["--mora-reference", "clip"], "invalid choice: 'clip'")]),
    "ui": (["ui"], [(["--port", BIG], "--port 100... (401 digits): must be a whole number in [1, 65535]"),
                    (["--device", "tpu"], "invalid choice: 'tpu'")]),
}
CASES = [(command, extra, message) for command, (_, rows) in BAD.items() for extra, message in rows]


@pytest.mark.parametrize("command, extra, message", CASES, ids=[f"{c} {e[0]}" for c, e, _ in CASES])
def test_bad_values_are_one_line_before_anything_loads(command, extra, message, tmp_path, capsys, monkeypatch):
    import diffusers

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the bad value was reported")

    for cls in (diffusers.WanPipeline, diffusers.DiffusionPipeline, diffusers.AutoencoderKLWan):
        monkeypatch.setattr(cls, "from_pretrained", no_model)
    argv = [a.format(tmp=tmp_path) for a in BAD[command][0]] + extra
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert len(err) < 400  # a 401-digit number is never echoed whole


def test_settings_checks_live_on_the_dataclasses():
    """The checks the commands rely on are the dataclasses' own: the Python API gets the same lines."""
    from smrabooth.errors import SmraboothError

    for config, message in [(EvalSettings(mf_box=(0, 0, math.nan, 9)), "--mf-box"),
                            (EvalSettings(mf_grid=1), "--mf-grid 1"),
                            (ReproduceConfig(data="d", model="m", out="o", seeds=()), "--seeds is empty"),
                            (ExperimentSettings(lr=math.inf), "--lr inf"),
                            (ExperimentSettings(guidance=-1.0), "--guidance -1"),
                            (UiSettings(port=0), "--port 0"),
                            (GenerateConfig(fps=math.nan), "--fps nan")]:
        with pytest.raises(SmraboothError, match=re.escape(message)):
            config.validate()
    assert EvalSettings(mf_box="1,2,30,40").validate().mf_box == (1.0, 2.0, 30.0, 40.0)
    assert ReproduceConfig(data="d", model="m", out="o", seeds="0,2", methods="wan, smrabooth").validate().seeds == (0, 2)
    assert ExperimentSettings(subject_layer_types="").validate().subject_layer_types is None
