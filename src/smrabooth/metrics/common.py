"""Shared pieces of the metrics: devices and dtypes, model loading with clear errors, batching, cosine."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SmraboothError


class ModelLoadError(SmraboothError):
    """A metric's model could not be loaded; the evaluator skips that metric with a warning."""


def resolve_device(device=None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_dtype(device: torch.device) -> torch.dtype:
    """fp16 on GPU (as the reference scripts run), fp32 on CPU (where fp16 matmuls are slow or missing)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def offline_flag(local_files_only):
    """None means: offline when HF_HUB_OFFLINE is set, or when the id is a local folder (handled by from_pretrained)."""
    if local_files_only is None:
        return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    return bool(local_files_only)


def load_pretrained(cls, name_or_path: str, what: str, local_files_only=None, **kwargs):
    """`cls.from_pretrained` with a one-line error naming the metric's model and how to supply it (a local folder
    that is not there: as a missing folder, not as a bad hub id)."""
    from ..models.wan import check_model_source

    try:
        check_model_source(name_or_path, f"the {what} model", folder_check=None)
    except SmraboothError as e:
        raise ModelLoadError(f"cannot load {e}") from None
    try:
        return cls.from_pretrained(str(name_or_path), local_files_only=offline_flag(local_files_only), **kwargs)
    except Exception as e:  # OSError, ValueError, HF hub errors: all mean "not available here"
        hint = "a local folder" if Path(str(name_or_path)).exists() else "a hub id in the cache or a local folder"
        raise ModelLoadError(f"cannot load the {what} model {name_or_path!r} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); pass {hint} with the model's option") from None


def features(out) -> torch.Tensor:
    """transformers < 5 returns a tensor from get_*_features, >= 5 an output object with pooler_output."""
    return out if torch.is_tensor(out) else out.pooler_output


@torch.no_grad()
def embed_frames(fn, transform, frames, device, dtype, batch_size: int) -> torch.Tensor:
    """Preprocess and embed uint8 frames batch by batch (a whole 81-frame 832x480 video as float would
    take ~400 MB before resizing); returns float32 (F, D)."""
    out = []
    for i in range(0, len(frames), batch_size):
        out.append(fn(transform(frames[i:i + batch_size], device=device).to(dtype)).float())
    return torch.cat(out)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of every row of a with every row of b, in float32."""
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def read_image(path) -> np.ndarray:
    """RGB uint8 (H, W, 3); 16-bit and palette images converted exactly, a broken or huge file one line."""
    from ..readers import read_image_rgb

    return np.array(read_image_rgb(path))  # a writable copy (torch warns on read-only arrays)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def list_images(path) -> list[Path]:
    """A folder of images (sorted) or one image file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SmraboothError(f"{path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    if path.is_file():
        return [path]
    raise SmraboothError(f"subject images {path} do not exist")
