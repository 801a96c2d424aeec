"""Step caches: diffusers' cache hooks (`--cache NAME[:THRESHOLD]`) as one generation uses them.

- first-block (diffusers' FirstBlockCache): while the first block's output changes by less than THRESHOLD
  (relative; default 0.05) from the last computed pass, the other blocks are skipped and their last residual
  reused.
- mag (diffusers' MagCache): skips passes while the accumulated change of the residual's magnitude, predicted
  from per-step ratios measured on this model ("calibration"), stays under THRESHOLD (default 0.06), at most
  3 passes in a row and never in the first 20% of the steps. The ratios depend on the model and the schedule:
  the first video with a model, a step count and a shift calibrates them (nothing is skipped in that video)
  and stores them under the cache folder; every later one reads them.

Both reuse a residual computed under the LoRA scales of an earlier step. At a step where the scales change
(T_point, where the subject LoRA goes from its early to its late scale) `drop_cached_pass` makes the next
pass compute in full, so no step after the switch reuses a residual of the LoRAs before it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
from contextlib import contextmanager, nullcontext, redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np

from .errors import SmraboothError
from .logs import get_logger

log = get_logger(__name__)

CACHES = ("first-block", "mag")
DEFAULT_THRESHOLDS = {"first-block": 0.05, "mag": 0.06}  # diffusers' own defaults


def parse_cache(text: str, flag: str = "--cache") -> tuple[str, float | None]:
    """'first-block', 'mag' or 'NAME:THRESHOLD' -> (name, threshold or None); errors name `flag`."""
    name, _, value = text.partition(":")
    if name not in CACHES:
        raise SmraboothError(f"{flag} {text!r}: choose from {', '.join(CACHES)} (optionally NAME:THRESHOLD)")
    if not value:
        return name, None
    try:
        threshold = float(value)
    except ValueError:
        raise SmraboothError(f"{flag} {text!r}: the threshold after ':' must be a number") from None
    if not (threshold > 0 and np.isfinite(threshold)):
        raise SmraboothError(f"{flag} {text!r}: the threshold must be a positive number")
    return name, threshold


def make_cache_config(text: str, steps: int, mag_ratios: list[float] | None = None):
    """The diffusers cache-hook config of `text` for a run of `steps` steps; MagCache without `mag_ratios`
    calibrates (skips nothing)."""
    import diffusers

    name, value = parse_cache(text)
    threshold = DEFAULT_THRESHOLDS[name] if value is None else value
    if name == "first-block":
        return diffusers.FirstBlockCacheConfig(threshold=threshold)
    if mag_ratios is None:
        return diffusers.MagCacheConfig(calibrate=True, num_inference_steps=steps)
    return diffusers.MagCacheConfig(threshold=threshold, num_inference_steps=steps, mag_ratios=list(mag_ratios))


# ------------------------------------------------------------------------------------ MagCache calibration
def calibration_path(cache_dir: Path | None, transformer, steps: int, shift: float | None, scheduler: str | None) -> Path:
    """Where the MagCache ratios of this model and schedule live: one JSON per (model weights' identity,
    steps, shift, scheduler). The identity is the model's config and where it was loaded from."""
    config = dict(transformer.config)
    key = json.dumps({"config": {k: v for k, v in config.items() if not k.startswith("_")},
                      "source": config.get("_name_or_path"), "steps": steps, "shift": shift,
                      "scheduler": scheduler}, sort_keys=True, default=str)
    from .data.cache import default_cache_dir

    return Path(cache_dir or default_cache_dir()) / "magcache" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def read_ratios(path: Path) -> list[float] | None:
    """The stored ratios, or None when there are none (or they are unreadable: they are then measured again)."""
    try:
        ratios = json.loads(Path(path).read_text())["ratios"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(ratios, list) or not ratios or not all(
            isinstance(r, (int, float)) and np.isfinite(r) and r > 0 for r in ratios):
        return None
    return [float(r) for r in ratios]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextmanager
def capture_calibration():
    """Collect the ratios diffusers' MagCache reports at the end of a calibrating run (one list per cache
    context: cond, uncond or the batched pair); its own print of them is kept off the terminal."""
    logger = logging.getLogger("diffusers.hooks.mag_cache")
    records, level = _Records(), logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    found: list[list[float]] = []
    try:
        with redirect_stdout(StringIO()):
            yield found
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
        prefix = "MagCache Calibration Results:"
        for message in records.messages:
            if message.startswith(prefix):
                found.append([float(r) for r in ast.literal_eval(message[len(prefix):].strip())])


def write_ratios(path: Path, ratios: list[float]) -> None:
    from .train.state import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # another process may read it meanwhile: whole or absent
        tmp.write_text(json.dumps({"ratios": ratios}) + "\n")


# ------------------------------------------------------------------------------------------------ one run
@contextmanager
def step_caches(denoisers: dict, cache: str, steps: int, shift: float | None, scheduler: str | None):
    """The step cache `cache` on every denoiser for a run of `steps` steps, removed afterwards. MagCache reads its
    stored ratios for this model and schedule, or calibrates them in this run (nothing skipped) and stores them."""
    name, _ = parse_cache(cache)
    ratios = path = None
    if name == "mag":
        if len(denoisers) > 1:
            raise SmraboothError("--cache mag: a model with two experts (Wan2.2 A14B) is not supported (each expert "
                                 "runs part of the steps); use --cache first-block")
        path = calibration_path(None, next(iter(denoisers.values())), steps, shift, scheduler)
        ratios = read_ratios(path)
        if ratios is None:
            log.warning("MagCache: no ratios for this model and schedule yet: this video calibrates them (nothing is "
                        "skipped; later videos with this model, step count and shift use them), into %s", path)
    for transformer in denoisers.values():
        transformer.enable_cache(make_cache_config(cache, steps, ratios))
    try:
        with capture_calibration() if name == "mag" and ratios is None else nullcontext() as found:
            yield
        if found:  # the first context's (cond, or the batched pair): the passes the skips are decided on
            write_ratios(path, found[0])
    finally:
        for transformer in denoisers.values():
            transformer.disable_cache()


# ------------------------------------------------------------------------------------------ the switch step
def drop_cached_pass(transformer) -> int:
    """Make the next pass of every cache context compute in full: the cached residual of the passes before is
    forgotten (FirstBlockCache: the first block's residual it compares against; MagCache: the residual it adds,
    and its accumulated error), while MagCache keeps its step count. Returns how many cache states it reset."""
    reset = 0
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is None:
            continue
        for hook in registry.hooks.values():
            manager = getattr(hook, "state_manager", None)
            # diffusers keeps one state per cache context in StateManager._state_cache (not public API; the
            # test of the switch step fails if that changes)
            for state in getattr(manager, "_state_cache", {}).values():
                if hasattr(state, "head_block_residual"):  # FirstBlockCache
                    state.head_block_residual = None
                    reset += 1
                if hasattr(state, "previous_residual"):  # MagCache
                    state.previous_residual = None
                    state.accumulated_ratio, state.accumulated_err, state.accumulated_steps = 1.0, 0.0, 0
                    reset += 1
    return reset


__all__ = ["CACHES", "calibration_path", "capture_calibration", "drop_cached_pass", "make_cache_config",
           "parse_cache", "read_ratios", "step_caches", "write_ratios"]
