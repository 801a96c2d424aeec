"""Clips of a motion -> a motion folder: trimmed, resampled mp4s and metadata.csv.

    out/<name>_00.mp4 ...    `frames` frames at `fps` from `start` (H.264, even sizes)
    out/metadata.csv         file_name,text  ("a person S* dribbling a basketball")
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import run_folder
from ..errors import SmraboothError
from ..video import read_video, resample_times, write_video
from .folders import METADATA, VIDEO_EXTS, write_metadata
from .motion import check_clip_size
from .prepare_subject import check_out_folder, close_out_folder, expand_inputs, open_out_folder

MOTION_TOKEN = "S*"
COMMAND = "prepare-motion"
CAPTION_REQUEST = ("Describe this video frame in one sentence: who or what is in it and the motion being "
                   "performed. Do not mention sound.")


@dataclass
class ClipResult:
    source: Path
    file_name: str
    text: str
    source_duration: float
    source_fps: float
    source_size: tuple[int, int]  # width, height
    frames: int
    size: tuple[int, int]
    warning: str = ""


def insert_motion_token(caption: str, token: str = MOTION_TOKEN) -> str:
    """Put the motion token before the motion verb: 'a person dribbling a ball' -> 'a person S* dribbling a
    ball'. The verb is the first -ing word after the first word; captions that already hold the token
    are kept; without an -ing word the token is appended ('a man jumps, S* motion'): edit such captions."""
    caption = " ".join(caption.strip().split())
    if not caption:
        raise SmraboothError("the motion caption is empty: pass --caption 'a person S* dribbling a basketball'")
    if token in caption:
        return caption
    words = caption.split(" ")
    for i, w in enumerate(words):
        if i > 0 and re.fullmatch(r"[a-z]{3,}ing[,.]?", w.lower()) and w.lower() not in {"thing", "something",
                                                                                       "nothing", "ceiling"}:
            return " ".join(words[:i] + [token] + words[i:])
    return caption.rstrip(".") + f", {token} motion"


class Captioner:
    """One-sentence caption of a frame by an image-text-to-text model (transformers), e.g.
    Qwen/Qwen2.5-VL-3B-Instruct or HuggingFaceTB/SmolVLM-Instruct."""

    def __init__(self, model, processor, device: str | None = None, max_new_tokens: int = 60,
                 request: str = CAPTION_REQUEST):
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.processor = model.to(self.device).eval(), processor
        self.max_new_tokens, self.request = max_new_tokens, request

    @classmethod
    def from_pretrained(cls, id_or_path: str, local_files_only: bool | None = None, **kwargs):
        from transformers import AutoModelForImageTextToText

        from .segment import _load

        model, processor = _load("captioner", id_or_path, AutoModelForImageTextToText, local_files_only,
                                 "--captioner")
        return cls(model, processor, **kwargs)

    def __call__(self, image) -> str:
        import torch

        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.request}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(images=[image], text=prompt, return_tensors="pt").to(self.device)
        with torch.no_grad():
            ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = ids[:, inputs["input_ids"].shape[1]:]  # drop the echoed prompt
        return self.processor.batch_decode(new, skip_special_tokens=True)[0].strip()


def lowercase_first(text: str) -> str:
    """'A man jumps.' -> 'a man jumps' (captions join other text); acronyms ('NBA player') stay."""
    text = text.strip().rstrip(".")
    first = text.split(" ", 1)[0]
    return text if len(first) > 1 and first.isupper() else text[:1].lower() + text[1:]


def probe_video(path: Path) -> tuple[float, float, tuple[int, int]]:
    """(duration s, fps, (width, height)) from the container, without decoding (0.0 where unknown)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else 0.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = container.duration / 1e6 if container.duration else 0.0
            return duration, fps, (stream.codec_context.width, stream.codec_context.height)
    except (av.error.FFmpegError, OSError, ValueError, IndexError):
        return 0.0, 0.0, (0, 0)


def _write_clips(out: Path, clips, name: str, caption, captioner, token: str, fps: int, log):
    """The clips and metadata.csv into `out`; returns (results, rows)."""
    from PIL import Image

    results, rows = [], []
    for i, (src, video, warning, src_duration, src_fps, src_size) in enumerate(clips):
        file_name = clip_name(name, i)
        text = caption
        if text is None:
            text = lowercase_first(captioner(Image.fromarray(video[len(video) // 2])))
            log(f"{src}: captioned '{text}' (edit metadata.csv to refine it)")
        text = insert_motion_token(text, token)
        write_video(video, out / file_name, fps)
        r = ClipResult(src, file_name, text, src_duration, src_fps, src_size, len(video),
                       (video.shape[2], video.shape[1]), warning)
        results.append(r)
        rows.append((file_name, text))
        log(f"{src}: {src_duration:.2f} s, {src_fps:.4g} fps, {src_size[0]}x{src_size[1]} -> {file_name}: "
            f"{r.frames} frames at {fps} fps ({r.frames / fps:.2f} s), {r.size[0]}x{r.size[1]}")
        if warning:
            log(f"warning: {src}: {warning}")
    write_metadata(out / METADATA, rows)
    return results, rows


def owned_name(path: str) -> bool:
    """A file prepare-motion writes (a path in its folder): metadata.csv or a clip NAME_NN.mp4."""
    return path == METADATA or re.fullmatch(r"[\w.-]+_\d{2,}\.mp4", path) is not None


def prepared_names(out, name: str, count: int) -> tuple[str, ...]:
    """What this call writes into `out`, and the clips of a call with this --name before it: a set to replace."""
    out = Path(out)
    earlier = sorted(p.name for p in out.glob(f"{name}_*.mp4")) if out.is_dir() else []
    return (METADATA, *earlier, *(clip_name(name, i) for i in range(count)))


def clip_name(name: str, i: int) -> str:
    return f"{name}_{i:02d}.mp4"


def check_motion_out(out, overwrite: bool, name: str, files, adopt_unmarked: bool = False) -> None:
    """What prepare-motion would do to `out` is allowed (nothing is changed; check_out_folder): the CLI calls it
    before any model loads."""
    check_out_folder(out, overwrite, COMMAND, {"video": files}, prepared=prepared_names(out, name, len(files)),
                     owned=owned_name, adopt_unmarked=adopt_unmarked)


def prepare_motion(
    videos,
    name: str,
    out: str | os.PathLike,
    caption: str | None = None,
    frames: int = 49,
    fps: float = 15,
    start: float = 0.0,
    end: float | None = None,
    captioner=None,
    token: str = MOTION_TOKEN,
    overwrite: bool = False,
    log=print,
    adopt_unmarked: bool = False,
) -> list[ClipResult]:
    """Trim each video to [start, end], resample it to `fps` (nearest earlier frame, so variable frame
    rates work), keep the first `frames` frames (0: all), crop odd sizes to even, and write the folder.

    The caption is `caption` (the user's, it wins) or `captioner(middle frame)`; the S* token is put in
    when missing. A clip too short for `frames` at `fps` is kept with the frames it has, with a warning.
    `overwrite` replaces a prepared set in `out` (never one holding a clip given: check_out_folder).
    """
    name = name.strip()
    if not name or not re.fullmatch(r"[\w.-]+", name):
        raise SmraboothError(f"--name {name!r} must be a plain name (letters, digits, _ . -), e.g. dribble")
    if fps <= 0 or abs(fps - round(fps)) > 1e-9:
        raise SmraboothError(f"--fps must be a whole positive number (mp4 rates here are integers), got {fps}")
    if frames < 0:
        raise SmraboothError(f"--frames must be >= 0 (0 keeps the whole trimmed clip), got {frames}")
    if start < 0 or (end is not None and end <= start):
        raise SmraboothError(f"bad trim: --start {start} --end {end} (need 0 <= start < end)")
    if caption is None and captioner is None:
        raise SmraboothError("give --caption 'a person S* dribbling a basketball' or a --captioner model")
    files = expand_inputs(videos, VIDEO_EXTS, "video")
    fps = round(fps)
    check_motion_out(out, overwrite, name, files, adopt_unmarked)

    # Decode and resample everything before touching `out`: a bad clip fails before anything is written.
    clips = []
    for src in files:
        until = end if end is not None else (start + frames / fps if frames else None)
        clip = read_video(src, until=until)  # clear error for unreadable files
        src_duration, src_fps, _ = probe_video(src)
        src_duration = max(src_duration, clip.duration)
        src_fps = src_fps or clip.fps
        if start >= clip.duration:
            raise SmraboothError(f"{src} is {clip.duration:.2f} s long: --start {start} is past its end")
        idx = resample_times(clip, fps, None, start, end)
        if len(idx) == 0:
            raise SmraboothError(f"{src}: nothing left between --start {start} and --end {end}")
        warning = ""
        if frames and len(idx) < frames:
            warning = (f"too short: {len(idx) / fps:.2f} s after --start gives {len(idx)} frames at {fps} fps, "
                       f"--frames {frames} needs {frames / fps:.2f} s; keeping {len(idx)}")
        idx = idx[:frames] if frames else idx
        h, w = clip.frames.shape[1:3]
        check_clip_size(src, h, w)
        video = clip.frames[idx, : h - h % 2, : w - w % 2]  # H.264 needs even sizes: drop a last odd row/column
        clips.append((src, video, warning, src_duration, src_fps, (w, h)))
        del clip

    out = open_out_folder(out, overwrite, COMMAND, {"video": files}, prepared=prepared_names(out, name, len(clips)),
                          owned=owned_name, adopt_unmarked=adopt_unmarked)
    try:
        results, rows = _write_clips(out, clips, name, caption, captioner, token, fps, log)
    except BaseException:
        run_folder.discard(out)  # a replaced set stays as it was
        raise
    out = close_out_folder(out, COMMAND, owned_name)
    log(f"wrote {len(rows)} clips to {out}; captions: " + "; ".join(sorted({t for _, t in rows})))
    return results
