"""Motion clips for training: decode, resample to the training fps, take the training frame count,
resize/crop to the training size, and encode to Wan latents.

Wan's causal VAE needs 4k+1 frames (frame 0 alone, then groups of 4), so the frame count is checked
before anything is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SmraboothError
from .transforms import resize_cover_crop


def check_frame_count(frames: int, flag: str = "--frames") -> None:
    if frames < 1 or (frames - 1) % 4:
        lower = max(1, (frames - 1) // 4 * 4 + 1)
        raise SmraboothError(f"{flag} {frames}: Wan's VAE needs 4k+1 frames (e.g. {lower} or {lower + 4})")


def load_motion_frames(path: str | Path, frames: int, fps: float, height: int, width: int,
                       loop: bool = False, wan_frames: bool = True) -> torch.Tensor:
    """(frames, 3, height, width) float in [0, 1]: the first `frames` frames at `fps`, cover-resized and
    centre-cropped. A clip too short is an error, or with `loop` is played again from its start.
    `wan_frames`: require Wan's 4k+1 frame count (a U-Net's per-frame VAE takes any count)."""
    from PIL import Image

    from ..video import read_video, resample_times

    if wan_frames:
        check_frame_count(frames)
    path = Path(path)
    clip = read_video(path, until=None if loop else frames / fps)
    available = resample_times(clip, fps)
    if len(available) < frames and not loop:
        raise SmraboothError(
            f"{path} is {clip.duration:.2f} s long: {frames} frames at {fps:g} fps need {frames / fps:.2f} s. "
            f"Use a longer clip, fewer --frames (4k+1), a lower --fps, or --loop to repeat the clip")
    if len(available) < 2:
        raise SmraboothError(f"{path} has {len(available)} frame at {fps:g} fps: a motion needs at least 2")
    idx = np.resize(available, frames)  # repeats from the start when looping
    out = np.stack([np.asarray(resize_cover_crop(Image.fromarray(clip.frames[i]), width, height, Image.BICUBIC))
                    for i in idx])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def encode_video_latent(vae, frames: torch.Tensor) -> torch.Tensor:
    """(F, 3, H, W) in [0, 1] -> normalised latent (16, 1 + (F-1)/4, H/8, W/8), mean of the posterior."""
    from ..models.vae_decode import normalize_latents

    x = (frames * 2 - 1).permute(1, 0, 2, 3)[None].to(vae.device, vae.dtype)
    z = vae.encode(x).latent_dist.mode()
    return normalize_latents(vae, z)[0].float()


@torch.no_grad()
def encode_frame_latents(vae, frames: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """(F, 3, H, W) in [0, 1] -> (F, 16, 1, H/8, W/8): each frame encoded on its own, as a one-frame video."""
    from ..models.vae_decode import normalize_latents

    out = []
    for i in range(0, frames.shape[0], chunk):
        x = (frames[i : i + chunk] * 2 - 1)[:, :, None].to(vae.device, vae.dtype)
        out.append(normalize_latents(vae, vae.encode(x).latent_dist.mode()).float().cpu())
    return torch.cat(out)


@dataclass
class MotionExample:
    latent: torch.Tensor  # (16, T, h, w), normalised
    # (F-1, 2, H, W): SEA-RAFT flows between adjacent reference frames; MoRA with mora_reference="decoded":
    # {window start: flows of the clean latent's decoded window} (align.mora.decoded_window_flows)
    flows: torch.Tensor | dict | None
    text: str
    frame_latents: torch.Tensor | None = None  # (F, 16, 1, h, w): each frame as a one-frame video (spatial phase)
