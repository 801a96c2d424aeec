"""Training state, one implementation for every training loop (the LoRA trainers, and any other loop built
on smrabooth): atomic writes of checkpoints, capture and restore of all randomness, the jsonl log that a
resumed run truncates to its checkpoint, and when to autocast.

A resumed run continues exactly when it gets back the same weights, optimizer state, and RNG states (the
training generator, torch's CPU and CUDA generators, numpy's global one); `rng_state` captures them all as
tensors, so they go into safetensors or a `torch.load(weights_only=True)` file alike.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch


# ---------------------------------------------------------------- atomic writes
@contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary sibling path of `final` (a file or a folder: the caller writes it); when the block
    ends without an error it is renamed over `final`. A checkpoint is therefore complete or absent, never
    half-written by a killed call."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp")
    _remove(tmp)  # left by a call killed while writing
    try:
        yield tmp
        if final.is_dir() and tmp.is_dir():
            shutil.rmtree(final)  # os.replace does not replace a non-empty folder
        os.replace(tmp, final)
    except BaseException:
        try:  # a disk that filled up or turned read-only: leave no half-written temporary behind
            _remove(tmp)
        except OSError:
            pass
        raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# ---------------------------------------------------------------- randomness
def numpy_rng_state() -> list:
    """numpy's global RNG state as plain lists and numbers (JSON, and torch.load(weights_only=True), read it)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def set_numpy_rng_state(s) -> None:
    np.random.set_state((s[0], np.asarray(s[1], dtype=np.uint32), s[2], s[3], s[4]))


def rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Every RNG state a training step draws from, as CPU tensors: `generator` (the run's own: examples,
    sigmas, noise), torch's CPU and per-GPU global generators (dropout, initialisations) and numpy's (the
    MT19937 keys, position, and cached Gaussian)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state(),
             "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
             "numpy_pos": torch.tensor([pos, has_gauss], dtype=torch.int64),
             "numpy_cached": torch.tensor([cached], dtype=torch.float64)}
    if torch.cuda.is_available():
        state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def set_rng_state(state: dict[str, torch.Tensor], generator: torch.Generator, numpy_state: list | None = None) -> None:
    """Restore what `rng_state` captured. `numpy_state`: numpy's state in `numpy_rng_state`'s form, for
    checkpoints written before numpy's state was kept with the others."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        cuda = [state[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in state]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    if "numpy_keys" in state:
        pos, has_gauss = (int(v) for v in state["numpy_pos"])
        np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss,
                             float(state["numpy_cached"][0])))
    elif numpy_state is not None:
        set_numpy_rng_state(numpy_state)


# ---------------------------------------------------------------- the log
class JsonlLog:
    """Append-only log.jsonl, one line per step; each line is on disk when `write` returns (`tail -f` shows
    it). A fresh run starts an empty log; a resumed one drops the lines past its checkpoint's step (a call
    killed after logging and before saving), so the log reads as one uninterrupted run."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_log(self.path) if r["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a log.jsonl; [] when there is none yet. A last line cut short (a call killed while
    writing it, a full disk) is left out; a broken line before the last is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    records = []
    for i, ln in enumerate(lines):
        try:
            records.append(json.loads(ln))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            from ..errors import SmraboothError
            raise SmraboothError(f"{path} line {i + 1} is not a log record; fix or delete that line") from None
    return records


# ---------------------------------------------------------------- precision
def autocast_enabled(mixed_precision: str, device: torch.device) -> bool:
    """'auto': bf16 autocast on CUDA only (CPU bf16 autocast is slow and the tests want fp32); 'bf16': always;
    'no': never."""
    return mixed_precision == "bf16" or (mixed_precision == "auto" and device.type == "cuda")
