"""Motion clips for training: decode, take the training frame count (the file's first frames as they are, or
resampled to the training fps), resize/crop to the training size, and encode to Wan latents.

Wan's causal VAE needs 4k+1 frames (frame 0 alone, then groups of 4), so the frame count is checked
before anything is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SmraboothError
from .transforms import pil_filter, resize_cover_crop

# How a clip's frames are picked (--clip-timing). resample: the frames shown at 0, 1/fps, 2/fps, ... (by their
# timestamps; any source rate). first (the authors' code): the file's first `frames` frames as they are, at the
# file's own rate (their 49-frame clips at 16 fps play 3.06 s).
CLIP_TIMINGS = ("resample", "first")


def check_frame_count(frames: int, flag: str = "--frames") -> None:
    if frames < 1 or (frames - 1) % 4:
        lower = max(1, (frames - 1) // 4 * 4 + 1)
        raise SmraboothError(f"{flag} {frames}: Wan's VAE needs 4k+1 frames (e.g. {lower} or {lower + 4})")


MIN_CLIP_SIDE = 16  # pixels: the smallest clip a motion is learned from (prepare-motion refuses smaller ones too)


def check_clip_size(path, height: int, width: int) -> None:
    """A clip of `height` x `width` pixels is large enough to learn a motion from (a 1x1 clip is one flat colour)."""
    if min(height, width) < MIN_CLIP_SIDE:
        raise SmraboothError(f"{path} is {width}x{height} pixels: too small to train on ({MIN_CLIP_SIDE}x{MIN_CLIP_SIDE}"
                             " at least)")


def load_motion_frames(path: str | Path, frames: int, fps: float, height: int, width: int,
                       loop: bool = False, wan_frames: bool = True, timing: str = "resample",
                       resize_filter: str = "bicubic") -> torch.Tensor:
    """(frames, 3, height, width) float in [0, 1]: the first `frames` frames, picked by `timing` (CLIP_TIMINGS:
    resampled to `fps`, or the file's own), cover-resized with `resize_filter` and centre-cropped. A clip too
    short is an error, or with `loop` is played again from its start. `wan_frames`: require Wan's 4k+1 frame
    count (a U-Net's per-frame VAE takes any count)."""
    from PIL import Image

    from ..video import read_video, resample_times

    if wan_frames:
        check_frame_count(frames)
    if timing not in CLIP_TIMINGS:
        raise SmraboothError(f"--clip-timing {timing!r}: choose {', '.join(CLIP_TIMINGS)}")
    resample = pil_filter(resize_filter)
    path = Path(path)
    if timing == "first":
        clip = read_video(path, max_frames=None if loop else frames)
        available = np.arange(len(clip.frames))
        short = (f"{path} has {len(available)} frames: --frames {frames} takes the first {frames} as they are "
                 f"(--clip-timing first). Use a longer clip, fewer --frames (4k+1), --clip-timing resample with a "
                 f"lower --fps, or --loop to repeat the clip")
        rate = f"at its {clip.fps:g} fps"
    else:
        clip = read_video(path, until=None if loop else frames / fps)
        available = resample_times(clip, fps)
        short = (f"{path} is {clip.duration:.2f} s long: {frames} frames at {fps:g} fps need {frames / fps:.2f} s. "
                 f"Use a longer clip, fewer --frames (4k+1), a lower --fps, --clip-timing first (the file's own "
                 f"frames), or --loop to repeat the clip")
        rate = f"at {fps:g} fps"
    check_clip_size(path, *clip.frames.shape[1:3])
    if len(available) < frames and not loop:
        raise SmraboothError(short)
    if len(available) < 2:
        raise SmraboothError(f"{path} has {len(available)} frame {rate}: a motion needs at least 2")
    idx = np.resize(available, frames)  # repeats from the start when looping
    out = np.stack([np.asarray(resize_cover_crop(Image.fromarray(clip.frames[i]), width, height, resample))
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
