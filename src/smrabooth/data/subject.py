"""Subject images for training: one transform for image, mask and encoder input, and the
precomputed tensors (VAE latent, latent-grid mask, DINOv2 tokens) cached on disk by content hash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SmraboothError
from .folders import load_image, load_mask
from .transforms import resize_center_crop


def load_image_and_mask(image_path, mask_path, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """image (3, size, size) in [0, 1]; mask (1, size, size) in {0, 1} or None. Same crop for both."""
    from PIL import Image

    image = load_image(image_path)
    mask_t = None
    if mask_path is not None:
        mask = Image.fromarray(load_mask(mask_path, image.size).astype(np.uint8) * 255)
        mask = resize_center_crop(mask, size, Image.NEAREST)
        mask_t = torch.from_numpy((np.asarray(mask) > 127).astype(np.float32))[None]
        if mask_t.sum() == 0:
            raise SmraboothError(f"mask {mask_path} is empty inside the {size}x{size} centre crop: the subject "
                                 f"would be cropped away; fix the mask or recrop the image")
    image = resize_center_crop(image, size, Image.BICUBIC)
    image_t = torch.from_numpy(np.asarray(image).astype(np.float32) / 255.0).permute(2, 0, 1)
    return image_t, mask_t


MASK_RULES = ("area", "bilinear")


def mask_to_latent_grid(mask: torch.Tensor, latent_hw: tuple[int, int], rule: str = "area") -> torch.Tensor:
    """(1, H, W) pixel mask -> (1, 1, h, w) on the latent grid. area: the fraction of each latent cell the
    subject covers; bilinear (the authors' rule): a bilinear resize, every cell above 0 counts as subject (1)."""
    if rule == "bilinear":
        grid = F.interpolate(mask[None].float(), size=latent_hw, mode="bilinear", align_corners=False)
        return (grid > 0).float()[:, :, None][0]
    if rule != "area":
        raise SmraboothError(f"mask rule {rule!r}: choose {', '.join(MASK_RULES)}")
    return F.interpolate(mask[None], size=latent_hw, mode="area")[:, :, None][0]


@torch.no_grad()
def encode_image_latent(vae, image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> normalised latent (16, 1, H/8, W/8): a one-frame video, mean of the posterior."""
    x = (image * 2 - 1)[None, :, None].to(vae.device, vae.dtype)
    from ..models.vae_decode import normalize_latents

    z = vae.encode(x).latent_dist.mode()
    return normalize_latents(vae, z)[0].float()


@dataclass
class SubjectExample:
    latent: torch.Tensor  # (16, 1, h, w)
    mask: torch.Tensor  # (1, 1, h, w) in [0, 1]; all ones without a mask
    tokens: torch.Tensor | None  # (h/2 * w/2, C) DINOv2 patch tokens on the DiT grid
    text: str
