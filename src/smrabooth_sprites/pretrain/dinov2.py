"""Stage `dinov2`: Dinov2Model learns patch features that carry shape, colour and texture.

SuRA aligns DiT tokens with DINOv2 patch features, so those features must say what the subject looks
like where it is. Linear heads (discarded afterwards) read the final hidden state:
- each patch token predicts the share of its 16x16 pixels that are background / sprite body colour /
  texture colour (3 classes) and the share of each of the 11 colours (soft-label cross-entropy), both
  exact from the clip's masks and the design's colours;
- the CLS token predicts shape, colour, texture, texture colour and background colour (cross-entropy).
Inputs are what `dinov2_patch_features` feeds the encoder: RGB in [0, 1], ImageNet-normalised,
128x128 (patch 16 -> an 8x8 grid).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from smrabooth.models.dinov2 import IMAGENET_MEAN, IMAGENET_STD
from smrabooth.train.common import autocast_enabled

from ..world import COLORS, SHAPES, TEXTURES, sample_clip
from .common import STREAM_BASE, ClipStream, StageConfig, StageParts

COLOR_NAMES = tuple(COLORS)
_CODES = np.array([(r << 16) | (g << 8) | b for r, g, b in COLORS.values()], dtype=np.int64)
CLS_HEADS = {"shape": len(SHAPES), "color": len(COLORS), "texture": len(TEXTURES), "texture_color": len(COLORS),
             "background": len(COLORS)}


def color_index(images: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) -> index into COLORS per pixel (the renderer has no anti-aliasing: exact)."""
    codes = (images[..., 0].astype(np.int64) << 16) | (images[..., 1].astype(np.int64) << 8) | images[..., 2]
    order = np.argsort(_CODES)
    return order[np.searchsorted(_CODES[order], codes)]


def patch_shares(labels: np.ndarray, n: int, patch: int) -> np.ndarray:
    """(k, H, W) int labels -> (k, H/patch, W/patch, n) share of each label in each patch."""
    k, h, w = labels.shape
    onehot = np.eye(n, dtype=np.float32)[labels]  # (k, H, W, n)
    return onehot.reshape(k, h // patch, patch, w // patch, patch, n).mean(axis=(2, 4))


def dinov2_item(seed: int, frames: int, size: int, per_clip: int, patch: int) -> dict:
    clip = sample_clip(seed, "train", frames, size)
    ks = np.sort(np.random.default_rng((seed, 1)).choice(frames, per_clip, replace=False))  # by seed: fixed per clip
    images, masks, d = clip.frames[ks], clip.masks[ks], clip.design
    colors = color_index(images)
    region = np.where(masks, 1, 0)
    if d.texture != "solid":
        region[masks & (colors == COLOR_NAMES.index(d.texture_color))] = 2
    labels = [SHAPES.index(d.shape), COLOR_NAMES.index(d.color), TEXTURES.index(d.texture),
              COLOR_NAMES.index(d.texture_color), COLOR_NAMES.index(clip.background)]
    return {"images": images, "region": patch_shares(region, 3, patch),
            "colors": patch_shares(colors, len(COLORS), patch), "labels": np.array(labels, dtype=np.int64)}


def build_heads(hidden: int) -> nn.ModuleDict:
    heads = {f"cls_{k}": nn.Linear(hidden, n) for k, n in CLS_HEADS.items()}
    heads["patch_region"] = nn.Linear(hidden, 3)
    heads["patch_color"] = nn.Linear(hidden, len(COLORS))
    return nn.ModuleDict(heads)


def pixel_values(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> ImageNet-normalised (N, 3, H, W), as dinov2_patch_features."""
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous().float() / 255.0  # see to_video
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def build_dinov2_stage(cfg: StageConfig, device: torch.device) -> StageParts:
    from ..bundle import build_sprites_models

    encoder = build_sprites_models(cfg.preset, cfg.seed).dinov2.to(device).requires_grad_(True)
    torch.manual_seed(cfg.seed + 5)
    heads = build_heads(encoder.config.hidden_size).to(device)
    patch = encoder.config.patch_size
    autocast = autocast_enabled(cfg.mixed_precision, device)

    def step(batch: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
        images = batch["images"].flatten(0, 1)  # (B*k, H, W, 3)
        k = batch["images"].shape[1]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            hidden = encoder(pixel_values=pixel_values(images, device)).last_hidden_state
            cls, tokens = hidden[:, 0], hidden[:, 1:]
            logits = {name: heads[name](cls if name.startswith("cls_") else tokens) for name in heads}
        labels = batch["labels"].to(device).repeat_interleave(k, dim=0)  # (B*k, 5)
        cls_terms, correct = [], []
        for j, name in enumerate(CLS_HEADS):
            lg = logits[f"cls_{name}"].float()
            cls_terms.append(F.cross_entropy(lg, labels[:, j]))
            correct.append((lg.argmax(-1) == labels[:, j]).float().mean())
        region = batch["region"].to(device).flatten(0, 1).flatten(1, 2)  # (B*k, grid*grid, 3)
        colors = batch["colors"].to(device).flatten(0, 1).flatten(1, 2)
        patch_region = soft_ce(logits["patch_region"], region)
        patch_color = soft_ce(logits["patch_color"], colors)
        cls_loss = torch.stack(cls_terms).sum()
        return {"loss": cls_loss + patch_region + patch_color, "cls": cls_loss, "patch_region": patch_region,
                "patch_color": patch_color, "acc": torch.stack(correct).mean()}

    stream = ClipStream(functools.partial(dinov2_item, frames=cfg.frames, size=cfg.size,
                                          per_clip=cfg.per_clip, patch=patch), STREAM_BASE["dinov2"], cfg.clips)
    params = list(encoder.parameters()) + list(heads.parameters())
    return StageParts(modules={"dinov2": encoder, "heads": heads}, params=params, stream=stream, step=step)
