"""VBench's Subject Consistency (Huang et al., CVPR 2024; vbench/subject_consistency.py).

DINO v1 ViT-B/16 CLS features of every frame, frames resized so the shorter side is 224 (bilinear, no
antialias, no crop), ImageNet normalisation. For each frame after the first: the mean of
max(0, cos(previous, current)) and max(0, cos(first, current)); averaged over those frames, x100.
"""

from __future__ import annotations

import math
import types

import torch
import torch.nn.functional as F

from ..errors import SmraboothError
from .dino import VBENCH_DINO, DinoEmbedder, load_dino
from .preprocess import vbench_dino_transform


def _dino_interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """facebookresearch/dino's own position-embedding interpolation (vision_transformer.py): bicubic with
    scale_factor (n + 0.1) / sqrt(N). transformers' ViT resizes to an exact size instead, which gives slightly
    different embeddings for the non-square frames VBench feeds (shorter side 224, no crop)."""
    npatch, n = embeddings.shape[1] - 1, self.position_embeddings.shape[1] - 1
    if npatch == n and height == width:
        return self.position_embeddings
    cls_pos, patch_pos = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
    dim, side = embeddings.shape[-1], int(math.sqrt(n))
    h0, w0 = height // self.patch_size + 0.1, width // self.patch_size + 0.1
    patch_pos = F.interpolate(patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2),
                              scale_factor=(h0 / math.sqrt(n), w0 / math.sqrt(n)), mode="bicubic")
    return torch.cat((cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)


def load_subject_consistency_model(name_or_path: str = VBENCH_DINO, device=None, local_files_only=None,
                                   batch_size: int = 32) -> DinoEmbedder:
    emb = load_dino(name_or_path, device, local_files_only, batch_size, transform=vbench_dino_transform(224))
    if emb.model.config.model_type == "vit":  # the torch.hub DINO model that VBench loads
        e = emb.model.embeddings
        e.interpolate_pos_encoding = types.MethodType(_dino_interpolate_pos_encoding, e)
    return emb


def subject_consistency_from_features(feats: torch.Tensor) -> float:
    if len(feats) < 2:
        raise SmraboothError("subject consistency needs a video of at least 2 frames")
    f = F.normalize(feats.float(), dim=-1)
    to_prev = (f[1:] * f[:-1]).sum(-1).clamp(min=0)
    to_first = (f[1:] * f[:1]).sum(-1).clamp(min=0)
    return ((to_prev + to_first) / 2).mean().item() * 100


def subject_consistency(emb: DinoEmbedder, frames) -> float:
    return subject_consistency_from_features(emb.images(frames))
