"""smrabooth's messages: one `logging` tree under "smrabooth" (a module logs with `get_logger(__name__)`).

By default warnings reach stderr as `warning: ...` lines, as the CLI has always printed them; `--verbose`
(`set_verbosity(verbose=True)`) adds the info lines that say what a command is doing (which model and backbone,
what was cached), `--debug` the debug ones. The tree keeps its own handler and does not propagate, as diffusers'
and transformers' loggers do, so an application's logging setup sees nothing twice; it writes to whatever
`sys.stderr` is when a message comes (a redirected stream, pytest's capture). What a command produces (`wrote
...`) stays on stdout, printed, and errors go through the CLI's one error boundary (cli/__init__.py).
"""

from __future__ import annotations

import logging
import sys

ROOT = "smrabooth"


class _StderrHandler(logging.Handler):
    """Writes each record to the current sys.stderr (not the one of import time)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001  (logging's contract: a broken stream never raises into the caller)
            self.handleError(record)


class _Format(logging.Formatter):
    """`warning: message` and `error: message`; info and debug lines as they are."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return f"{record.levelname.lower()}: {message}" if record.levelno >= logging.WARNING else message


def _root() -> logging.Logger:
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Format())
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    return logger


def get_logger(name: str) -> logging.Logger:
    """The logger of module `name` (pass `__name__`), under the smrabooth tree."""
    _root()
    return logging.getLogger(name if name == ROOT or name.startswith(ROOT + ".") else f"{ROOT}.{name}")


def set_verbosity(verbose: bool = False, debug: bool = False) -> None:
    """warnings only (default), info too (`verbose`), or everything (`debug`)."""
    _root().setLevel(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)


__all__ = ["ROOT", "get_logger", "set_verbosity"]
