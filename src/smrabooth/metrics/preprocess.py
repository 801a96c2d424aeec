"""Batched image preprocessing written with torch ops, one preset per reference implementation.

Every metric feeds its model exactly what the reference code feeds it; the references differ in small
ways that change scores (bicubic vs bilinear, antialiasing, floor vs round in the centre crop), so each
difference is a field here rather than a hidden assumption:

- Hugging Face processors (CLIP, PickScore, DINOv2, DINO v1) work on uint8 PIL images: antialiased
  resize, result rounded to uint8, crop offset floor((H - h) / 2).
- VBench works on uint8 tensors through torchvision: resize without antialiasing, rounded to uint8,
  crop offset round((H - h) / 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL.Image.Resampling values used by processors


@dataclass
class ImageTransform:
    resize: str = "shortest_edge"  # "shortest_edge" | "exact" | "longer_max" | "none"
    size: int | tuple[int, int] = 224  # side for shortest_edge / longer_max, (h, w) for exact
    interpolation: str = "bicubic"
    antialias: bool = True
    crop: tuple[int, int] | None = (224, 224)  # (h, w) centre crop, None for no crop
    crop_rounding: str = "floor"  # "floor" (transformers) or "round" (torchvision)
    mean: tuple[float, ...] | None = OPENAI_CLIP_MEAN
    std: tuple[float, ...] | None = OPENAI_CLIP_STD

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        if self.resize == "shortest_edge":
            s = int(self.size)
            return (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
        if self.resize == "exact":
            return tuple(self.size)
        if self.resize == "longer_max":  # VBench imaging quality: only shrink, longer side <= size
            if max(h, w) <= self.size:
                return h, w
            scale = self.size / max(h, w)
            return int(scale * h), int(scale * w)
        return h, w

    def __call__(self, frames, device=None) -> torch.Tensor:
        """uint8 frames (F, H, W, 3) (numpy or torch) -> float32 (F, 3, h, w), normalised."""
        x = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
        if x.ndim == 3:
            x = x[None]
        x = x.to(device).permute(0, 3, 1, 2).float()
        h, w = x.shape[-2:]
        oh, ow = self.output_size(h, w)
        if (oh, ow) != (h, w):
            # Both references resize uint8 images and get uint8 back, hence the rounding. PIL (antialiased,
            # the transformers processors) resizes width then height and stores uint8 in between: doing the
            # same brings torch within one level of PIL on 99.9% of pixels, against ~15% of pixels off by up
            # to 4-6 levels in a single float pass. torchvision (VBench, no antialias) is one float pass.
            if self.antialias and ow != w:
                x = F.interpolate(x, size=(h, ow), mode=self.interpolation, align_corners=False, antialias=True)
                x = x.round().clamp(0, 255)
            if (x.shape[-2], x.shape[-1]) != (oh, ow):
                x = F.interpolate(x, size=(oh, ow), mode=self.interpolation, align_corners=False,
                                  antialias=self.antialias)
                x = x.round().clamp(0, 255)
        if self.crop is not None:
            ch, cw = self.crop
            if oh < ch or ow < cw:  # processors pad small images; our frames are never this small
                x = F.pad(x, ((cw - ow) // 2 if ow < cw else 0, (cw - ow + 1) // 2 if ow < cw else 0,
                              (ch - oh) // 2 if oh < ch else 0, (ch - oh + 1) // 2 if oh < ch else 0))
                oh, ow = x.shape[-2:]
            if self.crop_rounding == "floor":
                top, left = (oh - ch) // 2, (ow - cw) // 2
            else:
                top, left = int(round((oh - ch) / 2.0)), int(round((ow - cw) / 2.0))
            x = x[..., top:top + ch, left:left + cw]
        x = x / 255.0
        if self.mean is not None:
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x


def transform_from_processor(proc, fallback: ImageTransform | None = None) -> ImageTransform:
    """The ImageTransform equivalent to a transformers image processor, given as the processor object or
    its preprocessor_config.json dict (CLIPImageProcessor, ViTImageProcessor, BitImageProcessor...).
    Keys the config leaves out take the values of `fallback`."""
    fb = fallback or openai_clip_transform()
    get = proc.get if isinstance(proc, dict) else (lambda k, d=None: getattr(proc, k, d))
    size = get("size")
    if isinstance(size, dict) and "shortest_edge" in size:
        resize, rsize = "shortest_edge", size["shortest_edge"]
    elif isinstance(size, dict) and "height" in size:
        resize, rsize = "exact", (size["height"], size["width"])
    elif isinstance(size, int):
        # an int means "shorter side" for CLIP/BiT processors but a square for ViT ones (transformers'
        # default_to_square), e.g. facebook/dino-vits16's size 224 is 224x224
        kind = str(get("image_processor_type") or get("feature_extractor_type") or type(proc).__name__)
        if any(k in kind for k in ("CLIP", "Bit")):
            resize, rsize = "shortest_edge", size
        else:
            resize, rsize = "exact", (size, size)
    else:
        resize, rsize = fb.resize, fb.size
    if get("do_resize", True) is False:
        resize = "none"
    crop = fb.crop
    do_crop = get("do_center_crop")
    if do_crop is False:
        crop = None
    elif get("crop_size") is not None:
        cs = get("crop_size")
        crop = (cs["height"], cs["width"]) if isinstance(cs, dict) else (int(cs), int(cs))
    resample = get("resample")
    interpolation = _PIL_RESAMPLE.get(int(resample), "bicubic") if resample is not None else fb.interpolation
    mean, std = get("image_mean") or fb.mean, get("image_std") or fb.std
    if get("do_normalize", True) is False:
        mean = std = None
    return ImageTransform(resize=resize, size=rsize, interpolation=interpolation, antialias=True, crop=crop,
                          crop_rounding="floor", mean=tuple(mean) if mean else None, std=tuple(std) if std else None)


def load_transform(name_or_path, local_files_only=None, fallback: ImageTransform | None = None) -> ImageTransform:
    """Read a model's preprocessor_config.json (local folder or hub cache) into an ImageTransform.

    Read as a plain dict, so it does not depend on which processor backend (PIL/torchvision) is installed."""
    from transformers.image_processing_base import ImageProcessingMixin

    from .common import offline_flag

    try:
        cfg, _ = ImageProcessingMixin.get_image_processor_dict(str(name_or_path),
                                                               local_files_only=offline_flag(local_files_only))
    except Exception:  # no preprocessor_config.json: the reference's documented defaults
        return fallback or openai_clip_transform()
    return transform_from_processor(cfg, fallback)


def openai_clip_transform(n_px: int = 224) -> ImageTransform:
    """CLIPProcessor of the OpenAI checkpoints: shorter side to n_px (bicubic), centre crop, CLIP stats."""
    return ImageTransform("shortest_edge", n_px, "bicubic", True, (n_px, n_px), "floor")


def vbench_clip_transform(n_px: int = 224) -> ImageTransform:
    """VBench clip_transform (aesthetic quality): tensor Resize(bicubic, antialias=False) + CenterCrop."""
    return ImageTransform("shortest_edge", n_px, "bicubic", False, (n_px, n_px), "round")


def vbench_dino_transform(n_px: int = 224) -> ImageTransform:
    """VBench dino_transform (subject consistency): shorter side to n_px (bilinear, no antialias), no crop."""
    return ImageTransform("shortest_edge", n_px, "bilinear", False, None, "round", IMAGENET_MEAN, IMAGENET_STD)


def vbench_imaging_transform(max_side: int = 512) -> ImageTransform:
    """VBench imaging quality ('longer' mode): shrink so the longer side is at most 512, values in [0, 1]."""
    return ImageTransform("longer_max", max_side, "bilinear", False, None, "round", None, None)
