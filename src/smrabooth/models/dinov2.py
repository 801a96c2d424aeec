"""DINOv2 patch features for SuRA (transformers' Dinov2Model; ViT-g by default, as the paper).

Images are resized so the patch grid equals the DiT token grid (patch 14, DiT tokens of 16 pixels:
a 512x512 image -> 448x448 -> 32x32 patches), normalised with ImageNet statistics, and the last
hidden state (after DINOv2's final layer norm) is returned without the CLS and register tokens.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..errors import SmraboothError
from ..recipes import DINOV2_GIANT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_dinov2(model: str, device=None, dtype=torch.float32, local_files_only: bool | None = None):
    """A DINOv2 from a hub id or folder; anything else (another model type, missing or unexpected weights) is
    an error: SuRA against randomly initialised weights would train silently on noise."""
    from transformers import AutoConfig, Dinov2Model

    try:
        config = AutoConfig.from_pretrained(model, local_files_only=local_files_only)
        if getattr(config, "model_type", None) != "dinov2":
            raise SmraboothError(f"--encoder {model}: is a {getattr(config, 'model_type', 'unknown')} model, not a "
                                 f"DINOv2 (e.g. {DINOV2_GIANT})")
        encoder, info = Dinov2Model.from_pretrained(model, torch_dtype=dtype, local_files_only=local_files_only,
                                                    output_loading_info=True)
    except (OSError, ValueError) as e:
        raise SmraboothError(
            f"could not load the DINOv2 encoder {model} ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            f"offline, download {DINOV2_GIANT} elsewhere and pass its folder to --encoder"
        ) from None
    missing, unexpected = list(info.get("missing_keys") or []), list(info.get("unexpected_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if missing or unexpected or mismatched:
        wrong = mismatched[0] if mismatched else None
        wrong = wrong[0] if isinstance(wrong, tuple) else wrong  # (name, shapes) or the name
        what = (f"{len(missing)} missing weights (e.g. {missing[0]})" if missing else
                f"{len(mismatched)} weights of the wrong shape (e.g. {wrong})"
                if mismatched else f"{len(unexpected)} unexpected weights (e.g. {unexpected[0]})")
        raise SmraboothError(f"--encoder {model}: not a complete DINOv2: {what}; pass a DINOv2 folder such as "
                             f"{DINOV2_GIANT}")
    return encoder.to(device or "cpu").eval().requires_grad_(False)


def build_tiny_dinov2(hidden_size: int = 32, seed: int = 0):
    """A random-weight DINOv2 with the real class, for tests."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=hidden_size * 2, patch_size=14, image_size=56)
    return Dinov2Model(config).eval().requires_grad_(False)


# How an image is resized to DINOv2's input. antialias: bicubic with antialiasing, clamped to [0, 1], then
# normalised; the position table resampled to the patch grid by transformers at each call (bicubic). bicubic (the
# authors' code): normalised, then plain bicubic interpolation (no antialiasing, no clamp; a 512 -> 448 resize then
# samples the image instead of averaging it), and the position table resampled as their loader does it (timm's
# resample_abs_pos_embed: bicubic WITH antialiasing, 37x37 -> 32x32 for the hub's ViT-g at 448).
ENCODER_RESIZES = ("antialias", "bicubic")


@contextlib.contextmanager
def antialiased_positions(encoder):
    """While inside, `encoder` (a transformers Dinov2Model) resamples its position table to the input's patch grid
    with antialiased bicubic interpolation, as the authors' loader does once; the model is left as it was."""
    embeddings = encoder.embeddings
    patch = encoder.config.patch_size

    def interpolate_pos_encoding(tokens, height, width):
        table = embeddings.position_embeddings
        old = int((table.shape[1] - 1) ** 0.5)
        new = (height // patch, width // patch)
        if (old, old) == new:
            return table
        grid = table[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=new, mode="bicubic", align_corners=False, antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, table.shape[-1]).to(table.dtype)
        return torch.cat([table[:, :1], grid], dim=1)

    embeddings.interpolate_pos_encoding = interpolate_pos_encoding  # an instance attribute shadows the method
    try:
        yield encoder
    finally:
        del embeddings.interpolate_pos_encoding


@torch.no_grad()
def dinov2_patch_features(encoder, images: torch.Tensor, grid: tuple[int, int],
                          resize: str = "antialias") -> torch.Tensor:
    """images (B, 3, H, W) in [0, 1] -> patch features (B, grid_h, grid_w, C) in fp32; `resize`: ENCODER_RESIZES."""
    if resize not in ENCODER_RESIZES:
        raise SmraboothError(f"encoder resize {resize!r}: choose {', '.join(ENCODER_RESIZES)}")
    patch = encoder.config.patch_size
    size = (grid[0] * patch, grid[1] * patch)
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    if resize == "antialias":
        x = F.interpolate(images.float(), size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        x = (x - mean) / std
    else:
        x = F.interpolate((images.float() - mean) / std, size=size, mode="bicubic", align_corners=False)
    x = x.to(encoder.device, encoder.dtype)
    positions = contextlib.nullcontext() if resize == "antialias" else antialiased_positions(encoder)
    with positions:
        hidden = encoder(pixel_values=x).last_hidden_state
    skip = 1 + getattr(encoder.config, "num_register_tokens", 0)
    tokens = hidden[:, skip:]
    return tokens.reshape(x.shape[0], grid[0], grid[1], -1).float()
