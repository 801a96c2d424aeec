"""VBench's Subject Consistency (Huang et al., CVPR 2024; vbench/subject_consistency.py).

DINO v1 ViT-B/16 CLS features of every frame, frames resized so the shorter side is 224 (bilinear, no
antialias, no crop), ImageNet normalisation. For each frame after the first: the mean of
max(0, cos(previous, current)) and max(0, cos(first, current)); averaged over those frames, x100.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import SmraboothError
from .dino import VBENCH_DINO, DinoEmbedder, load_dino
from .preprocess import vbench_dino_transform


def load_subject_consistency_model(name_or_path: str = VBENCH_DINO, device=None, local_files_only=None,
                                   batch_size: int = 32) -> DinoEmbedder:
    return load_dino(name_or_path, device, local_files_only, batch_size, transform=vbench_dino_transform(224))


def subject_consistency_from_features(feats: torch.Tensor) -> float:
    if len(feats) < 2:
        raise SmraboothError("subject consistency needs a video of at least 2 frames")
    f = F.normalize(feats.float(), dim=-1)
    to_prev = (f[1:] * f[:-1]).sum(-1).clamp(min=0)
    to_first = (f[1:] * f[:1]).sum(-1).clamp(min=0)
    return ((to_prev + to_first) / 2).mean().item() * 100


def subject_consistency(emb: DinoEmbedder, frames) -> float:
    return subject_consistency_from_features(emb.images(frames))
