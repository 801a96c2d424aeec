"""Stage `searaft`: our SEA-RAFT learns optical flow from adjacent frames of sprite clips, against the
world's exact forward flow.

Loss: RAFT's sequence L1, sum_i gamma^(n-1-i) mean|f_i - f_gt| over every prediction of the forward
pass (the regressed initial flow and each refinement iteration, upsampled), gamma 0.85. SEA-RAFT's
mixture-of-Laplace loss is not used: the world's flow is exact everywhere (no invalid pixels), so the
uncertainty it models has nothing to learn from. The log reports end-point error (EPE, pixels) of the
final prediction over all pixels and over sprite pixels only (the background's flow is 0).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from smrabooth.train.common import autocast_enabled

from ..world import sample_clip
from .common import STREAM_BASE, ClipStream, StageConfig, StageParts


def searaft_item(seed: int, frames: int, size: int, per_clip: int) -> dict:
    clip = sample_clip(seed, "train", frames, size)
    ks = np.sort(np.random.default_rng((seed, 2)).choice(frames - 1, per_clip, replace=False))
    return {"image1": clip.frames[ks], "image2": clip.frames[ks + 1], "flow": clip.flow[ks], "mask": clip.masks[ks]}


def _images(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, k, H, W, 3) -> float (B*k, 3, H, W) in [0, 255] (SEA-RAFT's own convention)."""
    return x.to(device, non_blocking=True).flatten(0, 1).permute(0, 3, 1, 2).contiguous().float()  # see to_video


def sequence_loss(flows: list[torch.Tensor], gt: torch.Tensor, gamma: float) -> torch.Tensor:
    n = len(flows)
    return sum(gamma ** (n - 1 - i) * (f.float() - gt).abs().mean() for i, f in enumerate(flows))


def build_searaft_stage(cfg: StageConfig, device: torch.device) -> StageParts:
    from ..bundle import build_sprites_models

    model = build_sprites_models(cfg.preset, cfg.seed).searaft.to(device).requires_grad_(True)
    autocast = autocast_enabled(cfg.mixed_precision, device)

    def step(batch: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
        image1, image2 = _images(batch["image1"], device), _images(batch["image2"], device)
        gt = batch["flow"].to(device, non_blocking=True).flatten(0, 1)
        mask = batch["mask"].to(device, non_blocking=True).flatten(0, 1)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            flows = model(image1, image2, all_iterations=True)["flow"]
        loss = sequence_loss(flows, gt, cfg.gamma)
        with torch.no_grad():
            epe = (flows[-1].float() - gt).norm(dim=1)
            epe_sprite = (epe * mask).sum() / mask.sum().clamp_min(1)
        return {"loss": loss, "epe": epe.mean(), "epe_sprite": epe_sprite}

    stream = ClipStream(functools.partial(searaft_item, frames=cfg.frames, size=cfg.size,
                                          per_clip=cfg.per_clip), STREAM_BASE["searaft"], cfg.clips)
    return StageParts(modules={"searaft": model}, params=list(model.parameters()), stream=stream, step=step)
