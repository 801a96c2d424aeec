"""Writing SMRA-Sprites data in the project's training layouts, with the ground truth beside it.

Subject folder (read by `smrabooth.data.folders.read_subject_folder`):
    images/0000.png ...   stills of one design (random placement, size, slight tilt, background)
    masks/0000.png ...    binary masks (0/255), same names
    metadata.csv          file_name,text  -> "0000.png","a picture of V* star"  (V* + the shape noun)
    subject.json          the design, and per image its background, position, radius and angle

Motion folder (one motion, several clips):
    clip_000.mp4 ...      H.264 videos
    clip_000.npz ...      exact frames (uint8), masks, positions, angles, scales, flow (see SpriteClip)
    clip_000.json ...     caption, training text, design, motion parameters, background
    metadata.csv          file_name,text  -> "clip_000.mp4","a red striped star doing S* on a blue background"
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from smrabooth.errors import SmraboothError

from .world import (
    COLORS,
    MotionSpec,
    SpriteClip,
    SpriteDesign,
    _article,
    _check_background,
    random_placement,
    render_clip,
    render_image,
    sample_background,
)

MOTION_TEXT = "{article} {design} doing S* on {bg_article} {background} background"


def subject_text(design: SpriteDesign, name: str | None = None) -> str:
    """The subject caption: 'a picture of V* star' (the shape is the class noun, as 'V* dog' in the paper)."""
    return f"a picture of V* {name or design.shape}"


def motion_text(design: SpriteDesign, background: str, template: str = MOTION_TEXT) -> str:
    """The motion caption: the content is described, the motion itself is left to S*."""
    words = design.words()
    return template.format(article=_article(words), design=words, bg_article=_article(background),
                           background=background)


def combined_prompt(design_noun: str, background: str, subject_token: str = "V*", motion_token: str = "S*") -> str:
    """A test prompt pairing a customized subject with a customized motion: 'a V* star doing S* on a green
    background'."""
    return f"a {subject_token} {design_noun} doing {motion_token} on {_article(background)} {background} background"


def _prepare(out) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SmraboothError(f"{out} is a file: choose a folder for --out")
    if out.exists() and any(out.iterdir()):
        raise SmraboothError(f"{out} exists and is not empty: choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "text"])
        writer.writerows(rows)


def write_subject_folder(out, design: SpriteDesign, n_images: int, seed: int, size: int = 128,
                         background: str | None = None, name: str | None = None) -> Path:
    """n_images stills of `design`: radius 0.22-0.36 of the image, anywhere it fits, tilted up to
    +-0.4 rad, on `background` (default: a random allowed colour per image)."""
    from PIL import Image

    if n_images < 1:
        raise SmraboothError(f"n_images must be at least 1, got {n_images}")
    if background is not None:
        _check_background(design, background)
    out = _prepare(out)
    (out / "images").mkdir()
    (out / "masks").mkdir()
    rng = np.random.default_rng(seed)
    rows, placements = [], []
    for i in range(n_images):
        bg = background or sample_background(rng, design)
        position, radius, angle = random_placement(rng, size, (0.22, 0.36), 0.4)
        image, mask = render_image(design, bg, size, position, radius, angle)
        file_name = f"{i:04d}.png"
        Image.fromarray(image).save(out / "images" / file_name)
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / file_name)
        rows.append((file_name, subject_text(design, name)))
        placements.append({"file_name": file_name, "background": bg, "position": position, "radius": radius,
                           "angle": angle})
    _write_csv(out / "metadata.csv", rows)
    (out / "subject.json").write_text(json.dumps({"design": dataclasses.asdict(design), "images": placements},
                                                 indent=1))
    return out


def save_ground_truth(clip: SpriteClip, path) -> Path:
    """Exact frames, masks, positions, angles, scales and flow as a compressed .npz."""
    path = Path(path)
    np.savez_compressed(path, frames=clip.frames, masks=clip.masks, positions=clip.positions, angles=clip.angles,
                        scales=clip.scales, flow=clip.flow)
    return path


def clip_info(clip: SpriteClip) -> dict:
    return {"caption": clip.caption, "design": dataclasses.asdict(clip.design),
            "motion": dataclasses.asdict(clip.motion), "background": clip.background}


def write_motion_folder(out, clips, fps: float = 15, frames: int = 17, size: int = 128,
                        template: str = MOTION_TEXT) -> Path:
    """Write clips (SpriteClip objects, or (design, motion, background) tuples rendered at frames x size)
    as mp4 + ground-truth .npz + .json, with metadata.csv captions carrying S* (see MOTION_TEXT)."""
    from smrabooth.video import write_video

    clips = list(clips)
    if not clips:
        raise SmraboothError("write_motion_folder needs at least one clip")
    out = _prepare(out)
    rows = []
    for i, item in enumerate(clips):
        if isinstance(item, SpriteClip):
            clip = item
        elif (isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], SpriteDesign)
              and isinstance(item[1], MotionSpec) and item[2] in COLORS):
            clip = render_clip(*item, frames=frames, size=size)
        else:
            raise SmraboothError(f"clip {i} is neither a SpriteClip nor a (SpriteDesign, MotionSpec, background) "
                                 f"tuple")
        stem = f"clip_{i:03d}"
        write_video(clip.frames, out / f"{stem}.mp4", fps=fps)
        save_ground_truth(clip, out / f"{stem}.npz")
        text = motion_text(clip.design, clip.background, template)
        (out / f"{stem}.json").write_text(json.dumps({**clip_info(clip), "text": text, "fps": fps}, indent=1))
        rows.append((f"{stem}.mp4", text))
    _write_csv(out / "metadata.csv", rows)
    return out


def load_ground_truth(path) -> dict[str, np.ndarray]:
    """The arrays saved by `save_ground_truth` (frames, masks, positions, angles, scales, flow)."""
    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"ground truth {path} does not exist")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def write_sample_clips(out, n: int, split: str = "train", frames: int = 17, size: int = 128, seed: int = 0,
                       fps: float = 15) -> Path:
    """`n` random clips of `split` (seeds seed .. seed+n-1) as mp4, a contact sheet of their first frames,
    and captions.txt (file name, tab, caption), into the new or empty folder `out`."""
    from PIL import Image
    from tqdm import tqdm

    from smrabooth.video import write_video

    from .world import sample_clip

    if n < 1:
        raise SmraboothError(f"--n must be at least 1, got {n}")
    out = _prepare(Path(out))
    firsts, lines = [], []
    for s in tqdm(range(seed, seed + n), desc="sprites", unit="clip"):
        clip = sample_clip(s, split, frames, size)
        name = f"sample_{s:04d}.mp4"
        write_video(clip.frames, out / name, fps=fps)
        firsts.append(clip.frames[0])
        lines.append(f"{name}\t{clip.caption}")
    cols = int(np.ceil(np.sqrt(len(firsts))))
    rows = int(np.ceil(len(firsts) / cols))
    sheet = np.full((rows * size, cols * size, 3), 255, dtype=np.uint8)
    for i, f in enumerate(firsts):
        r, c = divmod(i, cols)
        sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = f
    Image.fromarray(sheet).save(out / "contact_sheet.png")
    (out / "captions.txt").write_text("\n".join(lines) + "\n")
    return out
