"""Several GPUs for the dit stage: one process per GPU, started by torchrun, data-parallel by hand.

    torchrun --standalone --nproc_per_node 4 scripts/train_sprites.py dit --pool 20000 --batch 512 ...

Every process builds the same pool and draws the same random numbers from the same training generator
for the whole batch (which examples, sigmas, noise, dropped captions), then trains on its own contiguous
slice of it. The gradients are averaged over the processes after each backward, so every process takes
the same optimizer step, and the run is the one-process run of the same --batch up to the order of
floating-point sums; state.pt has the same form, and a run may be resumed with any number of GPUs that
divides --batch. Only the first process writes the stage folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from smrabooth.errors import SmraboothError


@dataclass(frozen=True)
class Shard:
    """This process's part of a multi-process run (rank 0 of 1: an ordinary run)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This process's contiguous share of a batch of n (n divisible by the world size)."""
        k = n // self.world
        return slice(self.rank * k, (self.rank + 1) * k)


def start(cfg) -> Shard:
    """Join the torchrun process group when there is one (WORLD_SIZE > 1) and pick this process's GPU
    (cfg.device becomes cuda:LOCAL_RANK); an ordinary run gets Shard()."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Shard()
    if cfg.stage != "dit":
        raise SmraboothError(f"{world} processes: only the dit stage trains on several GPUs (run the {cfg.stage} "
                             f"stage as one process: python scripts/train_sprites.py {cfg.stage} ...)")
    import torch.distributed as dist

    gpu = cfg.device != "cpu" and torch.cuda.is_available()
    device_id = None
    if gpu:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        cfg.device = f"cuda:{local}"
        device_id = torch.device(cfg.device)  # NCCL otherwise guesses the GPU from the rank (and warns)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo", device_id=device_id)
    return Shard(dist.get_rank(), dist.get_world_size())


def check(cfg, shard: Shard) -> None:
    """What a multi-process run needs of the stage's (resolved, possibly resumed) settings."""
    if shard.world == 1:
        return
    if not cfg.pool:
        raise SmraboothError(f"{shard.world} processes need --pool N (the dit stage then trains from latents each "
                             f"process holds; rendering a batch in every process would repeat it {shard.world} times)")
    if cfg.batch % shard.world:
        raise SmraboothError(f"--batch {cfg.batch} does not split over {shard.world} processes: choose a multiple "
                             f"of {shard.world}")


def stop(shard: Shard) -> None:
    if shard.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def barrier(shard: Shard) -> None:
    if shard.world > 1:
        import torch.distributed as dist

        dist.barrier()


def average_gradients(params: list[torch.nn.Parameter], shard: Shard) -> None:
    """Every process's .grad becomes the mean over the processes (one all-reduce of one flat buffer)."""
    if shard.world == 1:
        return
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)  # SUM: gloo has no AVG
    flat /= shard.world
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset: offset + g.numel()].view_as(g)
        offset += g.numel()


def average_losses(losses: dict[str, torch.Tensor], shard: Shard) -> dict[str, torch.Tensor]:
    """The loss terms averaged over the processes (what the log shows for the whole batch)."""
    if shard.world == 1:
        return losses
    import torch.distributed as dist

    values = torch.stack([v.detach().float() for v in losses.values()])
    dist.all_reduce(values)
    return dict(zip(losses, values / shard.world))


def agree(flag: bool, shard: Shard, device: torch.device) -> bool:
    """True on every process when it is True on any (e.g. the time limit, read from each clock)."""
    if shard.world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
