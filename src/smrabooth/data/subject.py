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
from .transforms import pil_filter, resize_center_crop

MASK_RULES = ("area", "bilinear")


def load_image_and_mask(image_path, mask_path, size: int, mask_rule: str = "area",
                        resize_filter: str = "bicubic") -> tuple[torch.Tensor, torch.Tensor | None]:
    """image (3, size, size) in [0, 1], resized with `resize_filter`; mask (1, size, size) or None, the same crop
    (`load_training_mask`)."""
    image = load_image(image_path)
    mask_t = load_training_mask(mask_path, image.size, size, mask_rule) if mask_path is not None else None
    image = resize_center_crop(image, size, pil_filter(resize_filter))
    image_t = torch.from_numpy(np.asarray(image).astype(np.float32) / 255.0).permute(2, 0, 1)
    return image_t, mask_t


def load_training_mask(mask_path, image_size: tuple[int, int], size: int, mask_rule: str = "area") -> torch.Tensor:
    """A subject mask at the training size, (1, size, size), cropped as its image (of `image_size`, width x height).

    By `mask_rule` (see `mask_to_latent_grid`): area, binary ({0, 1}: any channel > 127, resized nearest);
    bilinear (the authors'), the mask's first RGB channel in [0, 1] resized bilinearly, soft edges kept. Either
    way a mask with no subject pixel inside the crop is an error."""
    from PIL import Image

    binary = load_mask(mask_path, image_size)  # checked: readable, the image's size, not all black
    if mask_rule == "bilinear":
        with Image.open(mask_path) as im:
            red = im.convert("RGB").getchannel(0)
        mask = torch.from_numpy(np.asarray(resize_center_crop(red, size, Image.BILINEAR), np.float32) / 255)[None]
    elif mask_rule == "area":
        resized = resize_center_crop(Image.fromarray(binary.astype(np.uint8) * 255), size, Image.NEAREST)
        mask = torch.from_numpy((np.asarray(resized) > 127).astype(np.float32))[None]
    else:
        raise SmraboothError(f"mask rule {mask_rule!r}: choose {', '.join(MASK_RULES)}")
    if mask.sum() == 0:
        raise SmraboothError(f"mask {mask_path} is empty inside the {size}x{size} centre crop: the subject "
                             f"would be cropped away; fix the mask or recrop the image")
    return mask


def mask_to_latent_grid(mask: torch.Tensor, latent_hw: tuple[int, int], rule: str = "area") -> torch.Tensor:
    """(1, H, W) pixel mask -> (1, 1, h, w) on the latent grid. area: the fraction of each latent cell the
    subject covers; bilinear (the authors' rule, after `load_image_and_mask`'s bilinear resize of the mask to the
    training size): a second bilinear resize without antialiasing, every cell above 0 counts as subject (1).
    That second resize samples each cell between its two middle pixels per side (pixels 8k+3 and 8k+4)."""
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
