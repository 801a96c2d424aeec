"""The layers stay layers: outside src/smrabooth/backbones/ no code branches on which backbone it runs (it asks the
`Backbone`), and the U-Net variant's settings go through the same checks as Wan's (docs/architecture.md)."""

import ast
import math
from pathlib import Path

import pytest

from smrabooth.backbones import BACKBONES, CHOICES

SRC = Path(__file__).resolve().parents[1] / "src"
NAMES = {*BACKBONES, *CHOICES, *(b.family for b in BACKBONES.values())} - {"auto"}


def _strings(node) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for elt in node.elts for s in _strings(elt)]
    return []


def _named_backbone(node) -> bool:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else \
        node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else ""
    return "backbone" in name.lower() or name == "model_kind"


def name_branches(source: str) -> list[int]:
    """Lines comparing something with a backbone's name (`x == "unet"`, `backbone_of(a) != ...`, `in ("wan", ...)`)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare) or not all(
                isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Is, ast.IsNot)) for op in node.ops):
            continue
        sides = [node.left, *node.comparators]
        literal = [s for side in sides for s in _strings(side)]
        if any(s in NAMES for s in literal) or (literal and any(_named_backbone(side) for side in sides)):
            lines.append(node.lineno)
    return lines


def test_the_checker_finds_a_planted_branch():
    assert name_branches('if backbone_of(args) == "unet":\n    pass\n') == [1]
    assert name_branches('if kind in ("wan2.2-a14b", "x"):\n    pass\n') == [1]
    assert name_branches('if cfg.backbone != "zz":\n    pass\n') == [1]
    assert name_branches('if kind == "subject":\n    pass\n') == []


def test_no_backbone_name_branches_outside_backbones():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if "backbones" in path.relative_to(SRC).parts:
            continue
        found += [f"{path.relative_to(SRC)}:{line}" for line in name_branches(path.read_text())]
    assert not found, "branches on a backbone's name (ask the Backbone instead): " + ", ".join(found)


@pytest.mark.parametrize("name", ["wan2.1", "zeroscope"])
@pytest.mark.parametrize("kind", ["subject", "motion"])
@pytest.mark.parametrize("setting, value", [("lr", math.nan), ("steps", 0), ("rank", -1), ("weight_decay", math.inf),
                                            ("batch_size", 0), ("checkpoint_every", 0), ("seed", -1)])
def test_every_trainer_refuses_the_same_bad_settings(name, kind, setting, value):
    from smrabooth.errors import SmraboothError

    cls = BACKBONES[name].train_config_class(kind)
    with pytest.raises(SmraboothError, match=f"--{setting.replace('_', '-')}|{setting}"):
        cls(**{setting: value}).validate()


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name in ("wan2.1", "zeroscope"):
        BACKBONES[name].build_tiny().save_pretrained(root / name)
    return root


@pytest.mark.parametrize("name", ["wan2.1", "zeroscope"])
@pytest.mark.parametrize("kind", ["subject", "motion"])
def test_every_trainer_checks_the_run_folder_before_the_model_loads(name, kind, model_folders, tmp_path, monkeypatch,
                                                                    capsys):
    """A finished run in --out, --resume with nothing to resume, --overwrite on a folder that is not a run: one line
    each, and the model never loads (the CLI checks the folder first, for every backbone)."""
    from smrabooth.cli import main

    monkeypatch.setattr(type(BACKBONES[name]), "load", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "data").mkdir()
    finished, stray, empty = tmp_path / "finished", tmp_path / "stray", tmp_path / "empty"
    finished.mkdir()
    (finished / "config.yaml").write_text("steps: 1\n")
    (finished / f"{kind}_lora.safetensors").write_bytes(b"x")
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    argv = [f"train-{kind}", "--model", str(model_folders / name), "--data", str(tmp_path / "data"), "--steps", "1"]
    for out, extra, message in ((finished, [], "already holds a finished run"),
                                (empty, ["--resume"], "nothing to resume"),
                                (stray, ["--overwrite"], "refusing to delete them")):
        assert main([*argv, "--out", str(out), *extra]) == 2
        assert message in capsys.readouterr().err
    assert (stray / "notes.txt").read_text() == "mine"



def test_a_broken_invariant_reaches_the_user_as_a_bug_not_as_bad_input(tmp_path, monkeypatch, capsys):
    """InternalError (a broken invariant of our own code) exits 1 with a request to report it; SmraboothError (the
    user's input) exits 2 with its message alone."""
    from smrabooth.cli import main
    from smrabooth.cli import tiny as tiny_cli
    from smrabooth.errors import InternalError, SmraboothError

    for error, code in ((InternalError("window [9, 15) is outside 13 latent frames"), 1),
                        (SmraboothError("--out x: not writable"), 2)):
        def fail(*a, error=error, **k):
            raise error

        monkeypatch.setattr(tiny_cli, "write_folder", fail)
        assert main(["tiny-model", "--kind", "wan2.1", "--out", str(tmp_path / f"m{code}")]) == code
        err = capsys.readouterr().err
        assert str(error) in err and ("please report" in err) == (code == 1), err


def test_warnings_go_through_logging_and_verbose_adds_info(tmp_path, capsys):
    """A library warning is a `logging` record under "smrabooth" printed as `warning: ...` on stderr; --verbose adds
    the info lines (the model and backbone a command loads), which are absent without it."""
    import logging

    from smrabooth.cli import main
    from smrabooth.logs import get_logger, set_verbosity
    from smrabooth.readers import read_text

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    keep = Keep()
    logging.getLogger("smrabooth").addHandler(keep)
    try:
        (tmp_path / "latin.txt").write_bytes(b"caf\xe9\n")
        read_text(tmp_path / "latin.txt")
        assert [r.levelname for r in records] == ["WARNING"] and records[0].name == "smrabooth.readers"
        assert capsys.readouterr().err.startswith(f"warning: {tmp_path / 'latin.txt'} is not UTF-8")
        get_logger("smrabooth.x").info("an info line")
        assert capsys.readouterr().err == ""  # warnings only by default
        BACKBONES["wan2.1"].build_tiny().save_pretrained(tmp_path / "model")
        argv = ["generate", "--model", str(tmp_path / "model"), "--prompt", "x", "--frames", "5", "--height", "32",
                "--width", "32", "--steps", "1", "--dtype", "fp32"]
        assert main([*argv, "--out", str(tmp_path / "a.mp4")]) == 0
        assert "loading" not in capsys.readouterr().err
        assert main([*argv, "--verbose", "--out", str(tmp_path / "b.mp4")]) == 0
        assert f"loading {tmp_path / 'model'} as Wan2.1" in capsys.readouterr().err
    finally:
        logging.getLogger("smrabooth").removeHandler(keep)
        set_verbosity()
