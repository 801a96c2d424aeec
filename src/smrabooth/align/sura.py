"""Subject Representation Alignment (SuRA), docs/method.md stage 1.

The DiT hidden states after one block, passed through a small trainable MLP, are pulled towards the
frozen DINOv2 patch features of the subject image, token by token:

    L_SuRA = - mean_n cos( y*[n], h_phi(h_l[n]) )

The DiT's token grid and the encoder's patch grid are made to coincide (448x448 into DINOv2 gives
32x32 patches for a 512x512 latent's 32x32 tokens); when they do not, the encoder features are
resampled (bilinear) onto the DiT grid, never pooled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..recipes import PAPER


def build_projector(dit_dim: int, encoder_dim: int, width: int = PAPER.subject.projector_width) -> nn.Sequential:
    """REPA's projector: three linear layers with SiLU between them."""
    return nn.Sequential(
        nn.Linear(dit_dim, width), nn.SiLU(),
        nn.Linear(width, width), nn.SiLU(),
        nn.Linear(width, encoder_dim),
    )


def tokens_on_grid(features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Encoder patch features (B, h, w, C) -> (B, grid_h * grid_w, C), bilinear if the grids differ."""
    b, h, w, c = features.shape
    if (h, w) != tuple(grid):
        features = F.interpolate(features.permute(0, 3, 1, 2).float(), size=grid, mode="bilinear",
                                 align_corners=False).permute(0, 2, 3, 1)
    return features.reshape(b, grid[0] * grid[1], c)


def sura_loss(target_tokens: torch.Tensor, hidden_tokens: torch.Tensor, projector: nn.Module) -> torch.Tensor:
    """- mean over tokens of cos(target, projector(hidden)); both (B, N, *) with matching N."""
    predicted = projector(hidden_tokens.to(next(projector.parameters()).dtype))
    return -F.cosine_similarity(predicted.float(), target_tokens.float(), dim=-1).mean()
