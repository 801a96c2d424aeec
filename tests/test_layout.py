"""The method (smrabooth) never depends on the lab (smrabooth_sprites): the lab imports smrabooth, never the
reverse, so the method can be read, installed and used without it."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import smrabooth

LAB = "smrabooth_sprites"


def smrabooth_modules() -> dict[str, Path]:
    """Every module of the smrabooth package -> its file (packages: their __init__.py)."""
    found = {"smrabooth": Path(smrabooth.__file__)}
    for info in pkgutil.walk_packages(smrabooth.__path__, prefix="smrabooth."):
        spec = info.module_finder.find_spec(info.name)
        found[info.name] = Path(spec.origin)
    return found


def imported_names(module: str, path: Path) -> set[str]:
    """The absolute names of every module `path` imports anywhere (top level, inside functions,
    `import x`, `from x import y`, relative `from ..x import y` resolved against `module`), and the
    first argument of importlib.import_module / __import__ calls when it is a literal string."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names.add(target)
            names.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def lab_imports(modules: dict[str, Path]) -> list[str]:
    return sorted(f"{m} imports {n}" for m, p in modules.items() for n in imported_names(m, p)
                  if n == LAB or n.startswith(LAB + "."))


def test_the_walk_sees_every_module_and_every_kind_of_import(tmp_path):
    modules = smrabooth_modules()
    assert {"smrabooth.cli", "smrabooth.train.state", "smrabooth.lora.inject", "smrabooth.metrics.runner"} <= set(
        modules)
    assert len(modules) == len(list(Path(smrabooth.__file__).parent.rglob("*.py")))
    probe = tmp_path / "probe.py"  # each way a module could reach the lab is caught
    for line in ("import smrabooth_sprites", "from smrabooth_sprites.world import sample_clip",
                 "def f():\n    from smrabooth_sprites import bundle",
                 "import importlib\nimportlib.import_module('smrabooth_sprites.cli')"):
        probe.write_text(line + "\n")
        assert lab_imports({"smrabooth.cli.probe": probe}), line
    probe.write_text("from ..train import state\nfrom . import common\n")  # relative imports resolve in smrabooth
    assert imported_names("smrabooth.cli.probe", probe) >= {"smrabooth.train", "smrabooth.train.state",
                                                          "smrabooth.cli", "smrabooth.cli.common"}


def test_smrabooth_never_imports_the_lab():
    assert lab_imports(smrabooth_modules()) == []


def test_importing_all_of_smrabooth_leaves_the_lab_unloaded():
    """In a fresh interpreter: import every smrabooth module, and build the CLI parser without the
    entry points that load plugins; the lab is not in sys.modules."""
    code = (
        "import sys, importlib, importlib.metadata, pkgutil, smrabooth\n"
        "importlib.metadata.entry_points = lambda **kw: []\n"  # the lab registers through one; that is its import
        "for m in pkgutil.walk_packages(smrabooth.__path__, prefix='smrabooth.'):\n"
        "    if not m.name.endswith('__main__'):\n"  # a __main__ runs the command line when imported
        "        importlib.import_module(m.name)\n"
        "import smrabooth.cli\n"
        "smrabooth.cli.entry_points = lambda **kw: []\n"
        "smrabooth.cli.build_parser()\n"
        f"loaded = sorted(n for n in sys.modules if n.split('.')[0] == {LAB!r})\n"
        "print('LAB', loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "LAB []" in done.stdout


def test_a_broken_plugin_leaves_the_core_commands_working(monkeypatch, capsys):
    import smrabooth.cli as cli

    class Broken:
        name, value = "broken", "nowhere.cli:register"

        def load(self):
            raise ImportError("No module named 'nowhere'")

    monkeypatch.setattr(cli, "entry_points", lambda group: [Broken()])
    parser = cli.build_parser()
    assert "broken (nowhere.cli:register): ImportError" in parser.format_help()
    with __import__("pytest").raises(SystemExit):
        parser.parse_args(["generate", "--help"])
    assert "--prompt" in capsys.readouterr().out
