"""Data-parallel LoRA training over the processes of a launcher (`accelerate launch`, `torchrun`).

Every process holds the whole model and the same LoRA, draws the same random stream, and computes its
share of each optimizer step's samples; the gradients are summed over processes, so the step is the
step of one process over all the samples:

    effective batch  G = processes x batch_size x gradient_accumulation
    sample g of a step draws its example, sigma and noise from its own generator, seeded by the g-th of
    G seeds the run's generator gives each step: which process computes it does not change it
    loss of the step = mean over the G samples (each sample's loss / G, summed)

With G = 1 the run's generator is used directly, as in a one-process run without these settings. Only
the main process writes (run folder, log, checkpoints, validation, the LoRA); the others read the
checkpoint on resume. A run resumes with another process count when G is kept: gradient accumulation
is recomputed as G / (processes x batch_size), or the call stops with one line saying why it cannot.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import SmraboothError
from ..logs import get_logger

log = get_logger(__name__)

_LAUNCHER_OFF = []  # set inside `single_process()`: callers that run jobs side by side under a launcher


@contextmanager
def single_process():
    """Train in this process alone even under a launcher (`smrabooth reproduce` runs one job per worker)."""
    _LAUNCHER_OFF.append(True)
    try:
        yield
    finally:
        _LAUNCHER_OFF.pop()


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _LAUNCHER_OFF


def process_device(device: str | None) -> str | None:
    """Under a launcher on GPUs, each process trains on its own GPU (the launcher's LOCAL_RANK)."""
    if launched() and torch.cuda.is_available() and device in (None, "cuda"):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


@dataclass
class DataParallel:
    processes: int = 1
    rank: int = 0
    batch_size: int = 1  # samples per process per optimizer step, computed one after the other
    accumulation: int = 1  # times batch_size per process per optimizer step

    @classmethod
    def from_launcher(cls, batch_size: int = 1, accumulation: int = 1) -> DataParallel:
        """This process's place in the launch (through accelerate's PartialState, which starts the process
        group: NCCL on GPUs, gloo on CPUs); one process without a launcher."""
        if batch_size < 1 or accumulation < 1:
            raise SmraboothError(f"--batch-size {batch_size} and --gradient-accumulation {accumulation} must be >= 1")
        if not launched():
            return cls(1, 0, batch_size, accumulation)
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())  # cpu: accelerate's gloo group for CPU processes
        return cls(state.num_processes, state.process_index, batch_size, accumulation)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def effective_batch(self) -> int:
        return self.processes * self.batch_size * self.accumulation

    # ------------------------------------------------------------ the main process writes
    def on_main(self, fn: Callable):
        """fn() on the main process; its result (or its SmraboothError, raised on every process) everywhere."""
        if self.processes == 1:
            return fn()
        import torch.distributed as dist

        box = [None]
        if self.is_main:
            try:
                box = [("ok", fn())]
            except SmraboothError as e:
                box = [("error", str(e))]
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise SmraboothError(value)
        return value

    def barrier(self) -> None:
        if self.processes > 1:
            import torch.distributed as dist

            dist.barrier()

    # ------------------------------------------------------------ resume
    def keep_effective_batch(self, saved: int) -> None:
        """A resumed run continues with the effective batch it was trained with: set the accumulation."""
        if saved == self.effective_batch:
            return
        per_step = self.processes * self.batch_size
        if saved % per_step:
            raise SmraboothError(
                f"this run was trained with an effective batch of {saved} samples per step; {self.processes} "
                f"process(es) x --batch-size {self.batch_size} cannot make it: resume with a process count and "
                f"batch size whose product divides {saved}")
        self.accumulation = saved // per_step

    def record(self, run_dir: Path, start_step: int) -> None:
        """parallel.json: one entry per call that trained this run (processes, batches, from which step)."""
        if not self.is_main:
            return
        path = Path(run_dir) / "parallel.json"
        calls = _recorded_calls(path) if start_step > 0 else []
        calls = [c for c in calls if c["from_step"] < start_step]
        calls.append({"from_step": start_step, "processes": self.processes, "batch_size": self.batch_size,
                      "gradient_accumulation": self.accumulation, "effective_batch": self.effective_batch})
        tmp = path.with_name(".parallel.json.tmp")
        tmp.write_text(json.dumps({"effective_batch": self.effective_batch, "calls": calls}, indent=1) + "\n")
        os.replace(tmp, path)

    # ------------------------------------------------------------ one optimizer step's gradients
    def backward(self, step: int, generator: torch.Generator, params: list[torch.nn.Parameter],
                 compute_losses: Callable, batched: bool = False) -> dict[str, torch.Tensor]:
        """This process's samples of the step, backward, gradients summed over processes; returns the step's
        mean losses (detached; the same on every process). `compute_losses(step, generator)` computes one sample;
        `batched`: `compute_losses(step, generators)` computes the mean over one sample per generator, and gets
        each `batch_size` group of samples at once (accumulation rounds one after another): the same draws and
        the same mean, in one forward."""
        g_total = self.effective_batch
        if g_total == 1:
            losses = compute_losses(step, [generator] if batched else generator)
            losses["loss"].backward()
            return losses
        seeds = torch.randint(2**62, (g_total,), generator=generator)  # the same in every process
        mine = self.batch_size * self.accumulation
        group = self.batch_size if batched else 1
        total: dict[str, torch.Tensor] = {}
        for first in range(self.rank * mine, (self.rank + 1) * mine, group):
            gens = [torch.Generator().manual_seed(int(seeds[g])) for g in range(first, first + group)]
            losses = compute_losses(step, gens if batched else gens[0])
            (losses["loss"] * (group / g_total)).backward()
            for k, v in losses.items():
                total[k] = total.get(k, 0) + v.detach().float() * (group / g_total)
        if self.processes > 1:
            import torch.distributed as dist

            grads = [p.grad for p in params if p.grad is not None]  # an idle LoRA's None stays None
            device = grads[0].device
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            i = 0
            for g in grads:
                g.copy_(flat[i:i + g.numel()].view_as(g))
                i += g.numel()
            names = sorted(total)
            # loss terms may live on the CPU (the official motion stage's phase number): one device to reduce on
            stacked = torch.stack([total[k].reshape(()).to(device) for k in names])
            dist.all_reduce(stacked)
            total = dict(zip(names, stacked.unbind()))
        return total


SINGLE = DataParallel()


def _recorded_calls(path: Path) -> list[dict]:
    """The calls parallel.json records; a damaged file (cut short, edited) is started again with a warning: it
    is a record of how the run was trained, not something training reads."""

    if not path.is_file():
        return []
    try:
        calls = json.loads(path.read_text())["calls"]
        if isinstance(calls, list) and all(isinstance(c, dict) and isinstance(c.get("from_step"), int) for c in calls):
            return calls
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        pass
    log.warning(f"{path} is damaged; its record of earlier calls starts again")
    return []
