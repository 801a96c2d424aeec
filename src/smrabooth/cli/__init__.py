"""The `smrabooth` command. Each subcommand lives in its own module with a `register(subparsers)`.

Workflow: prepare-subject / prepare-motion -> train-subject -> train-motion -> generate -> evaluate.

Other installed packages add commands through the `smrabooth.commands` entry point group: each entry names
a `register(subparsers)` function (the SMRA-Sprites lab, smrabooth_sprites, adds `demo`, `bench` and
`sprites` this way). smrabooth itself never imports them, and one that fails to load is reported in the
help text and skipped: the core commands keep working.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

from ..errors import SmraboothError

# module name in smrabooth.cli -> registers one or more subcommands
COMMAND_MODULES = ["prepare", "train", "generate", "lora", "tiny", "evaluate", "study", "reproduce"]
PLUGIN_GROUP = "smrabooth.commands"


def register_plugins(subparsers) -> list[str]:
    """Register the commands of every `smrabooth.commands` entry point; returns one line per entry point
    that could not be loaded or registered (a broken or half-installed plugin)."""
    failed = []
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            ep.load()(subparsers)
        except Exception as e:  # noqa: BLE001  (any error of a plugin must leave the core CLI usable)
            first = str(e).splitlines()[0][:200] if str(e) else ""
            failed.append(f"{ep.name} ({ep.value}): {type(e).__name__}: {first}")
    return failed


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors on one line (its usage block would make two), pointing at --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="smrabooth",
        description="Customized video generation (subject + motion LoRAs on Wan2.1, Wan2.2 and ZeroScope), after "
        "SMRABooth (CVPR 2026).",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"smrabooth {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback of an unexpected error and every debug line (also: "
                        "SMRABOOTH_DEBUG=1); the flag may stand anywhere on the line")
    parser.add_argument("--verbose", action="store_true",
                        help="say what the command is doing (which model and backbone load, and how long it takes); "
                        "the flag may stand anywhere on the line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    failed = register_plugins(subparsers)
    if failed:
        parser.epilog = "commands that could not be loaded: " + "; ".join(failed)
    return parser


def given_dests(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The dests of the options the user actually wrote in `argv` (not filled in from defaults): argv parsed
    again with every default suppressed. A resumed training compares only these with its saved settings."""
    saved = []

    def suppress(p):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    suppress(sub)
            else:
                saved.append((action, action.default))
                action.default = argparse.SUPPRESS
        saved.append((p, dict(p._defaults)))
        p._defaults.clear()

    suppress(parser)
    try:
        return set(vars(parser.parse_args(argv)))
    finally:
        for obj, default in saved:
            if isinstance(obj, argparse.ArgumentParser):
                obj._defaults.update(default)
            else:
                obj.default = default


def debugging(argv: list[str]) -> bool:
    """--debug anywhere on the line, or SMRABOOTH_DEBUG=1: unexpected errors show their traceback."""
    return "--debug" in argv or os.environ.get("SMRABOOTH_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def main(argv: list[str] | None = None) -> int:
    from ..hub import go_offline, is_offline
    from ..logs import set_verbosity
    from ..validation import one_line

    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = debugging(argv)
    set_verbosity(verbose="--verbose" in argv, debug=debug)
    argv = [a for a in argv if a not in ("--debug", "--verbose")]
    if "--offline" in argv or is_offline():
        go_offline()  # before the subcommand imports any hub-aware library
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train-subject", "train-motion"):  # --resume compares what the user gave
        args.given = given_dests(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    command = " ".join(filter(None, [args.command, *(getattr(args, k, None) for k in SUBCOMMAND_DESTS)]))
    try:
        return int(args.func(args) or 0)
    except SmraboothError as e:
        print(f"smrabooth {command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a disk that fills up or turns read-only while writing: the message says which file
        if debug:
            raise
        print(f"smrabooth {command}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # the one boundary: whatever escaped the checks is one line, not a traceback
        if debug:
            raise
        where = _where(e)
        print(f"smrabooth {command}: error: unexpected {type(e).__name__}{where}: {one_line(e)[:300] or '(no message)'}"
              f" (a bug in smrabooth, or an input it does not check yet: please report it; --debug or "
              f"SMRABOOTH_DEBUG=1 prints the traceback)", file=sys.stderr)
        return 1


SUBCOMMAND_DESTS = ("lora_command", "study_command", "bench_command", "sprites_command")


def _where(e: BaseException) -> str:
    """' in file.py:123' for the innermost frame of smrabooth's own code the error passed through."""
    import traceback

    frames = [f for f in traceback.extract_tb(e.__traceback__) if "smrabooth" in f.filename]
    return f" in {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""


if __name__ == "__main__":
    sys.exit(main())
