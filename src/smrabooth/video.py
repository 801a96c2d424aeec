"""Reading and writing videos and frames (PyAV for video, Pillow for images).

Frames are uint8 arrays of shape (F, H, W, 3) everywhere in smrabooth.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import SmraboothError


@dataclass
class Clip:
    """Decoded frames with their presentation times in seconds."""

    frames: np.ndarray  # (F, H, W, 3) uint8
    times: np.ndarray  # (F,) seconds from the first frame
    fps: float  # the container's average rate (informational; use `times` for resampling)

    @property
    def duration(self) -> float:
        if len(self.times) < 2:
            return 0.0
        # the last frame stays on screen for about as long as the one before it
        return float(self.times[-1] - self.times[0] + (self.times[-1] - self.times[-2]))


def to_uint8(frames) -> np.ndarray:
    """Float frames in [0, 1] (or uint8) -> uint8 (F, H, W, 3), rounding like diffusers' numpy_to_pil."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def check_output_path(path: str | os.PathLike) -> Path:
    """A file path that can be written; its missing folders are created."""
    from .validation import check_output_file

    path = check_output_file("output", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def exact_rate(fps: float, flag: str = "frame rate") -> Fraction:
    """`fps` as the fraction an mp4 stores (denominator up to 1001: 23.976 = 2997/125, 0.4 = 2/5); a rate no
    such fraction matches is refused rather than rounded (24 fps for 23.976 is a silently wrong video)."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not math.isfinite(fps) or fps <= 0:
        raise SmraboothError(f"{flag} {fps!r}: must be a finite number > 0")
    rate = Fraction(fps).limit_denominator(1001)
    if abs(float(rate) - float(fps)) > 1e-12 * float(fps):
        raise SmraboothError(f"{flag} {fps!r} cannot be stored exactly in an mp4, whose rates are fractions with a "
                             f"denominator up to 1001: pass e.g. {round(float(fps), 3):g}")
    return rate


def write_video(frames, path: str | os.PathLike, fps: float, crf: int = 18) -> Path:
    """Write H.264 mp4 (yuv420p, plays everywhere) at exactly `fps` (exact_rate)."""
    import av

    rate = exact_rate(fps)
    path = check_output_path(path)
    frames = to_uint8(frames)
    f, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise SmraboothError(f"H.264 needs even frame sizes, got {w}x{h}")
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def write_gif(frames, path: str | os.PathLike, fps: float) -> Path:
    from PIL import Image

    path = check_output_path(path)
    images = [Image.fromarray(f) for f in to_uint8(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


FRAMES_COMMAND = "generate --save-frames"  # the marker (run_folder) of a folder of frames


def check_frames_folder(folder: str | os.PathLike, prefix: str = "frame", flag: str = "--save-frames") -> set[str]:
    """The frame files (PREFIX_NNNN.png) in `folder` that an earlier --save-frames wrote, by the folder's marker;
    a frame file it did not write (the user's own frames) or another command's folder is an error: neither is ever
    replaced or removed."""
    import re

    from .run_folder import read_marker

    folder = Path(folder)
    if not folder.is_dir():
        return set()
    marker = read_marker(folder)
    if marker is not None and marker["command"] != FRAMES_COMMAND:
        raise SmraboothError(f"{flag} {folder}: is a folder of smrabooth {marker['command']}; choose another folder")
    ours = set(marker.get("files", ())) if marker is not None else set()
    frame = re.compile(rf"{re.escape(prefix)}_\d{{4,}}\.png")
    theirs = sorted(p.name for p in folder.iterdir() if frame.fullmatch(p.name) and p.name not in ours)
    if theirs:
        raise SmraboothError(f"{flag} {folder}: holds {theirs[0]}, which smrabooth generate did not write; writing the "
                             "frames there would replace it: choose another folder")
    return ours


def save_frames(frames, folder: str | os.PathLike, prefix: str = "frame") -> list[Path]:
    """PREFIX_0000.png ... into `folder`; frames of an earlier, longer video that --save-frames wrote there (by the
    folder's marker) are removed, so the folder holds this video's frames only. Other files are left alone, and a
    frame file it did not write is an error before anything is written (check_frames_folder)."""
    from PIL import Image

    from .run_folder import write_marker

    ours = check_frames_folder(folder, prefix)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(to_uint8(frames)):
        p = folder / f"{prefix}_{i:04d}.png"
        Image.fromarray(frame).save(p)
        paths.append(p)
    for name in ours - {p.name for p in paths}:
        (folder / name).unlink(missing_ok=True)
    write_marker(folder, FRAMES_COMMAND, [p.name for p in paths])
    return paths


def frame_strip(videos: list, count: int = 6) -> np.ndarray:
    """One row per video (uint8 (F, H, W, 3)), `count` frames each, evenly spaced from the first to the
    last: a still a README or a report can show (the demo's frames.png: reference motion, result, baseline)."""
    rows = []
    for video in videos:
        picks = np.linspace(0, len(video) - 1, count).round().astype(int)
        rows.append(np.concatenate([video[k] for k in picks], 1))
    return np.concatenate(rows, 0)


def read_video(path: str | os.PathLike, until: float | None = None, max_frames: int | None = None) -> Clip:
    """Decode every frame of a video file, with clear errors for missing or unreadable files.

    `until` (seconds from the first frame) stops decoding after the frame shown at that time, and
    `max_frames` after that many frames, so a few seconds of a long clip do not cost the memory of the
    whole clip.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"video {path} does not exist")
    frames, times = [], []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SmraboothError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate) if stream.average_rate else 0.0
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else len(times) / (rate or 1.0)
                if until is not None and times and t - times[0] > until + 1e-6:
                    break
                if max_frames is not None and len(frames) >= max_frames:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(t)
    except SmraboothError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise SmraboothError(f"{path} is not a readable video ({e})") from None
    if not frames:
        raise SmraboothError(f"{path} has no frames (zero-length or broken video)")
    times = np.asarray(times) - times[0]
    if not rate:
        rate = (len(times) - 1) / times[-1] if times[-1] > 0 else 1.0
    return Clip(np.stack(frames), times, rate)


def resample_times(clip: Clip, fps: float, num_frames: int | None = None, start: float = 0.0,
                   end: float | None = None) -> np.ndarray:
    """Indices of the source frames shown at times start, start + 1/fps, ... (nearest frame).

    Works for variable frame rates, since it uses each frame's own timestamp.
    """
    end = clip.duration if end is None else min(end, clip.duration)
    n_available = int(np.floor((end - start) * fps + 1e-6))
    n = n_available if num_frames is None else num_frames
    targets = start + np.arange(n) / fps + 1e-6  # + 1e-6 s: float noise must not pick the frame before
    idx = np.searchsorted(clip.times, targets, side="right") - 1  # last frame shown at or before t
    return np.clip(idx, 0, len(clip.times) - 1)
