"""Checks of user settings, run before any model is loaded.

Every check raises `SmraboothError` with one line naming the flag, the value given and what is
accepted, e.g. "--lr nan: must be a finite number > 0". The CLI modules and the settings
dataclasses' `validate()` methods call these; nothing else in smrabooth re-implements them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import SmraboothError
from .readers import short_repr


def one_line(text) -> str:
    """A message on one line: a YAML or torch error spread over several lines is joined with ' | '."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " | ".join(lines)


def _range_text(low, high, low_open: bool, integer: bool) -> str:
    kind = "a whole number" if integer else "a finite number"
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{kind} <= {high:g}"
    return kind


def check_number(flag: str, value, low=None, high=None, *, low_open: bool = False, integer: bool = False,
                 optional: bool = False):
    """`value` is a finite number (an int if `integer`) in [low, high] (low excluded if `low_open`).

    Returns it unchanged; None passes when `optional`. Whole numbers are compared as they are, never through a
    float: 10**400 is out of range, not an OverflowError."""
    if value is None and optional:
        return value
    accepted = _range_text(low, high, low_open, integer)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SmraboothError(f"{flag} {short_repr(value)}: must be {accepted}")
    if isinstance(value, int):
        shown = str(value) if abs(value) < 10**15 else f"{'-' if value < 0 else ''}{str(abs(value))[:3]}... " \
            f"({len(str(abs(value)))} digits)"
        if (low is not None and (value < low or (low_open and value == low))) or (high is not None and value > high):
            raise SmraboothError(f"{flag} {shown}: must be {accepted}")
        return value
    if integer and not (math.isfinite(value) and float(value).is_integer()):
        raise SmraboothError(f"{flag} {value!r}: must be {accepted}")
    if not math.isfinite(value):
        raise SmraboothError(f"{flag} {value}: must be {accepted}")
    if (low is not None and (value < low or (low_open and value == low))) or (high is not None and value > high):
        raise SmraboothError(f"{flag} {value:g}: must be {accepted}")
    return value


def parse_number(flag: str, value, low=None, high=None, *, low_open: bool = False, integer: bool = False,
                 optional: bool = False):
    """A number typed into a form (text, or a number a widget gives): parsed, then `check_number`; returns an
    int when `integer`. '²', 'inf', 'nan' and 1e400 are one-line errors."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise SmraboothError(f"{flag}: a number is needed")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if text.isascii() and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise SmraboothError(f"{flag} {short_repr(value)}: must be {_range_text(low, high, low_open, integer)}") \
                from None
    if integer and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return check_number(flag, value, low, high, low_open=low_open, integer=integer)


def check_multiple(flag: str, value: int, of: int, low: int, high: int) -> int:
    """A whole number in [low, high] that is a multiple of `of` (frame sizes)."""
    check_number(flag, value, low, high, integer=True)
    if value % of:
        near = max(low, round(value / of) * of)
        raise SmraboothError(f"{flag} {value}: must be a multiple of {of} in [{low}, {high}], e.g. {near}")
    return value


def check_choice(flag: str, value, choices) -> str:
    """`value` is one of `choices` (a setting that names a rule)."""
    if value not in tuple(choices):
        raise SmraboothError(f"{flag} {value!r}: choose {', '.join(map(str, choices))}")
    return value


# ---------------------------------------------------------------- inputs
def check_readable(flag: str, path, what: str = "file") -> Path:
    """`path` exists and can be read (a file, or a folder when `what` is 'folder'; 'path' takes either)."""
    path = Path(path)
    if not path.exists():
        raise SmraboothError(f"{flag} {path}: no such {what}")
    if what == "file" and path.is_dir():
        raise SmraboothError(f"{flag} {path}: is a folder, a file is needed")
    if what == "folder" and not path.is_dir():
        raise SmraboothError(f"{flag} {path}: is a file, a folder is needed")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise SmraboothError(f"{flag} {path}: permission denied (cannot read it)")
    return path


# ---------------------------------------------------------------- outputs
def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_parents(flag: str, path: Path) -> None:
    """Every existing ancestor of `path` is a folder, and the nearest one is writable (missing ones are created)."""
    anchor = _nearest_existing(path.parent)
    if not anchor.is_dir():
        raise SmraboothError(f"{flag} {path}: {anchor} is a file, not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise SmraboothError(f"{flag} {path}: folder {anchor} is not writable (permission denied or read-only)")


def check_output_file(flag: str, path, suffixes: tuple[str, ...] = (), overwrite: bool = True,
                      inputs: dict[str, object] | None = None) -> Path:
    """`path` can be written as a file: not a folder, its folder (or the first existing one above it) writable, and
    none of the command's `inputs` (flag -> path or paths: the same file by any name, a link included)."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise SmraboothError(f"{flag} {path}: must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise SmraboothError(f"{flag} {path}: is a folder, a file name is needed")
    for name, given in (inputs or {}).items():
        for p in given if isinstance(given, (list, tuple, set)) else [given]:
            if p and path.is_file() and Path(p).is_file() and os.path.samefile(p, path):
                raise SmraboothError(f"{flag} {path}: is the input {name} {p}; writing it would destroy it: choose "
                                     "another name")
    if path.exists() and not overwrite:
        raise SmraboothError(f"{flag} {path}: exists; pass --overwrite to replace it")
    if path.exists() and not os.access(path, os.W_OK):
        raise SmraboothError(f"{flag} {path}: is not writable (permission denied or read-only)")
    _check_parents(flag, path)
    return path


def check_output_dir(flag: str, path) -> Path:
    """`path` can be used as an output folder: not a file, writable if it exists, creatable if not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SmraboothError(f"{flag} {path}: is a file, a folder is needed")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise SmraboothError(f"{flag} {path}: folder is not writable (permission denied or read-only)")
        return path
    _check_parents(flag, path)
    return path


# ---------------------------------------------------------------- devices
def check_device(flag: str, device: str | None) -> str | None:
    """A torch device that exists here (None: the default, CUDA when available)."""
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise SmraboothError(f"{flag} {device}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SmraboothError(f"{flag} {device}: CUDA is not available here (torch {torch.__version__}); use cpu")
        if dev.index is not None and dev.index >= count:
            raise SmraboothError(f"{flag} {device}: there are {count} CUDA device(s): use cuda:0..cuda:{count - 1}")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise SmraboothError(f"{flag} {device}: MPS is not available here; use cpu")
    elif dev.type != "cpu":
        raise SmraboothError(f"{flag} {device}: unsupported device type {dev.type!r}; use cpu or cuda")
    return device


# ---------------------------------------------------------------- trainers
def check_train_settings(cfg) -> None:
    """The settings every trainer has (Wan's SubjectTrainConfig, MotionTrainConfig and the U-Net's), as their
    validate() calls it.
    Paths are checked when set (the Python API may leave `model`/`data` to the pipeline it is given)."""
    check_number("--steps", cfg.steps, 1, 10**7, integer=True)
    check_number("--rank", cfg.rank, 1, 4096, integer=True)
    check_number("--alpha", cfg.alpha, 0, 1e5, low_open=True)
    check_number("--lr", cfg.lr, 0, 1, low_open=True)
    if hasattr(cfg, "shift"):  # the flow-matching trainers' (the U-Net's epsilon schedule has none)
        check_number("--shift", cfg.shift, 0, 100, low_open=True)
    check_number("--seed", cfg.seed, 0, 2**63 - 1, integer=True)
    check_number("weight_decay", cfg.weight_decay, 0, 10)
    check_number("max_grad_norm", cfg.max_grad_norm, 0, 1e6)
    check_number("--checkpoint-every", cfg.checkpoint_every, 1, 10**7, integer=True)
    check_number("--batch-size", cfg.batch_size, 1, 4096, integer=True)
    check_number("--gradient-accumulation", cfg.gradient_accumulation, 1, 4096, integer=True)
    if hasattr(cfg, "validate_every"):  # the trainers that render validation videos
        check_number("--validate-every", cfg.validate_every, 0, 10**7, integer=True)
        check_number("validation_steps", cfg.validation_steps, 1, 1000, integer=True)
    if cfg.save_dtype not in ("bf16", "fp16", "fp32"):
        raise SmraboothError(f"--save-dtype {cfg.save_dtype!r}: choose bf16, fp16 or fp32")
    if hasattr(cfg, "memory"):  # the Wan trainers' speed policy (train/memory.py)
        from .train.memory import MEMORY_MODES

        check_choice("--memory", cfg.memory, MEMORY_MODES)
    from .data.transforms import RESIZE_FILTERS
    from .schedules import TIMESTEP_ROUNDINGS
    from .train.common import LORA_DTYPES, VAE_DTYPES

    if hasattr(cfg, "lora_dtype"):  # the flow-matching trainers (their `official` recipe runs the authors' code)
        check_choice("--lora-dtype", cfg.lora_dtype, tuple(LORA_DTYPES))
        check_choice("--timestep-rounding", cfg.timestep_rounding, TIMESTEP_ROUNDINGS)
        check_choice("--resize-filter", cfg.resize_filter, RESIZE_FILTERS)
    if hasattr(cfg, "vae_dtype"):
        check_choice("--vae-dtype", cfg.vae_dtype, tuple(VAE_DTYPES))
    if cfg.mixed_precision not in ("auto", "bf16", "no"):
        raise SmraboothError(f"--mixed-precision {cfg.mixed_precision!r}: choose auto, bf16 or no")
    if cfg.out:
        check_output_dir("--out", cfg.out)
    if cfg.data:
        check_readable("--data", cfg.data, "folder")
    if cfg.cache_dir:
        check_output_dir("--cache-dir", cfg.cache_dir)
