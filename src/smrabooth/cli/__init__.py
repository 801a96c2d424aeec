"""The `smrabooth` command. Each subcommand lives in its own module with a `register(subparsers)`.

Workflow: prepare-subject / prepare-motion -> train-subject -> train-motion -> generate -> evaluate.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import SmraboothError

# module name in smrabooth.cli -> registers one or more subcommands
COMMAND_MODULES = ["prepare", "train", "generate", "lora", "tiny", "evaluate", "study", "sprites", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smrabooth",
        description="Customized video generation (subject + motion LoRAs on Wan2.1), after SMRABooth (CVPR 2026).",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"smrabooth {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except SmraboothError as e:
        print(f"smrabooth {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
