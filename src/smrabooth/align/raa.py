"""Representation-Aware Alignment (RAA): SuRA for the U-Net variant (supplementary 5.1, Fig. 12).

A U-Net position sees a small neighbourhood; a DINOv2 patch token sees the whole image. Aligning the two
position by position (the DiT's SuRA) compares things of different receptive fields, so the U-Net path
first lets every U-Net position pool the whole image representation, a cross-attention:

    q    = h_phi(h)                         (M, d)  U-Net features of the chosen block, projected
    R    = softmax(q y*^T / sqrt(d))         (M, K)  relation map over all K DINOv2 tokens
    x*   = R y*                              (M, d)  the fused feature of each U-Net position
    L_SuRA = -(1/N) sum_n cos(y*[n], x*[n])

What n and N are. The supplementary calls n "the patch index": x*[n] is the fused feature at U-Net
position n, and y*[n] the encoder's feature at the SAME position, so N = M, the positions of the
chosen U-Net block's feature map (h x w of one frame; subject images are one-frame videos). The
encoder's grid (K tokens, e.g. 32x32) rarely equals the U-Net's, so y*[n] is read from the DINOv2
grid resampled bilinearly onto the U-Net grid (`sura.tokens_on_grid`, as the DiT's SuRA), while R
attends over all K tokens at the encoder's own resolution. d is the encoder width (1536 for ViT-g);
h_phi is REPA's 3-layer SiLU MLP from the U-Net width to d. y* is frozen (computed once, cached).

`--no-raa` (the paper's "w/o RAA") drops the fusion: -(1/N) sum_n cos(y*[n], h_phi(h)[n]) on the
same resampled grid, the DiT's per-token SuRA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .sura import build_projector, sura_loss, tokens_on_grid


class RAABlock(nn.Module):
    """h_phi and the relation map. Only h_phi has parameters: R is an attention with no extra weights."""

    def __init__(self, unet_dim: int, encoder_dim: int, width: int = 2048):
        super().__init__()
        self.projector = build_projector(unet_dim, encoder_dim, width)

    def forward(self, hidden: torch.Tensor, encoder_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (B, M, C_unet), encoder_tokens (B, K, d) -> fused x* (B, M, d) and R (B, M, K)."""
        q = self.projector(hidden.to(next(self.projector.parameters()).dtype)).float()
        y = encoder_tokens.float()
        relation = torch.softmax(q @ y.transpose(1, 2) / math.sqrt(y.shape[-1]), dim=-1)
        return relation @ y, relation


def feature_map_tokens(features: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """A U-Net block output (B*F, C, h, w) -> tokens (B*F, h*w, C) and the grid (h, w)."""
    b, c, h, w = features.shape
    return features.permute(0, 2, 3, 1).reshape(b, h * w, c), (h, w)


def raa_sura_loss(block: RAABlock, features: torch.Tensor, encoder_grid: torch.Tensor) -> torch.Tensor:
    """L_SuRA through RAA. features: the U-Net block output (B, C, h, w); encoder_grid: frozen DINOv2
    patch features (B, gh, gw, d). Returns -(1/N) sum_n cos(y*[n], x*[n]), N = h*w (module docstring)."""
    hidden, grid = feature_map_tokens(features)
    b, gh, gw, d = encoder_grid.shape
    fused, _ = block(hidden, encoder_grid.reshape(b, gh * gw, d))
    target = tokens_on_grid(encoder_grid, grid)
    return -F.cosine_similarity(fused, target.float(), dim=-1).mean()


def direct_sura_loss(block: RAABlock, features: torch.Tensor, encoder_grid: torch.Tensor) -> torch.Tensor:
    """The 'w/o RAA' ablation: per-position alignment of h_phi(h) with y* resampled to the U-Net grid."""
    hidden, grid = feature_map_tokens(features)
    return sura_loss(tokens_on_grid(encoder_grid, grid), hidden, block.projector)
