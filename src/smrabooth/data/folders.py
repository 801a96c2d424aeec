"""The training folder layouts, and the readers the trainers call.

Subject folder (one subject):      DIR/images/0001.png, DIR/masks/0001.png, DIR/metadata.csv
  or a plain folder of images plus a subject name (`--name dog`): captions become
  "a picture of V* dog", masks (if any) in DIR/masks/ with the same file names.
Motion folder (one motion):        DIR/clip_0.mp4 ..., DIR/metadata.csv
metadata.csv has the columns `file_name,text` (file_name relative to images/ for subjects and to
DIR for motions). A subject mask is a binary PNG with the same file name as its image.

The authors' released dataset is read as is:
    ROOT/subject_customized/<name>/{images/, masks/, metadata.csv}
    ROOT/motion_customized/video/<motion>/{*.mp4, metadata.csv, prompts.json, ...}
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SmraboothError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
VIDEO_EXTS = {".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif"}
METADATA = "metadata.csv"


@dataclass
class SubjectItem:
    image_path: Path
    mask_path: Path | None
    text: str


@dataclass
class MotionItem:
    video_path: Path
    text: str


def read_metadata(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Rows (file_name, text) of a metadata.csv, with clear errors for missing columns or empty files."""
    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"{path} does not exist: a training folder needs a metadata.csv with columns "
                             "file_name,text (smrabooth prepare-subject / prepare-motion write one)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheet exports add a BOM
            reader = csv.DictReader(f)
            fields = [c.strip() for c in (reader.fieldnames or [])]
            if "file_name" not in fields or "text" not in fields:
                raise SmraboothError(f"{path} must have the columns file_name,text (found: {','.join(fields)})")
            rows = []
            for i, row in enumerate(reader, start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                if not row["file_name"]:
                    raise SmraboothError(f"{path} line {i}: empty file_name")
                rows.append((row["file_name"], row["text"]))
    except (UnicodeDecodeError, csv.Error) as e:
        raise SmraboothError(f"{path} is not a readable CSV file ({e})") from None
    if not rows:
        raise SmraboothError(f"{path} lists no files")
    return rows


def write_metadata(path: str | os.PathLike, rows: list[tuple[str, str]]) -> Path:
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "text"])
        w.writerows(rows)
    return path


def load_image(path: str | os.PathLike):
    """PIL RGB image, with a clear error for unreadable files."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise SmraboothError(f"{path} is not a readable image ({e})") from None


def load_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """bool (H, W) from a mask PNG (any pixel > 127 in any channel is subject).

    `size` (width, height) is the image's size; a mask of another size is an error, since a
    resized mask would no longer line up with the subject.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise SmraboothError(f"{path} is not a readable mask image ({e})") from None
    if size is not None and (arr.shape[1], arr.shape[0]) != tuple(size):
        raise SmraboothError(f"mask {path} is {arr.shape[1]}x{arr.shape[0]} but its image is {size[0]}x{size[1]}: "
                             "masks must have the size of their images")
    mask = arr > 127
    if not mask.any():
        raise SmraboothError(f"mask {path} is all black (no subject pixels): redo it, or remove the image and "
                             "its row in metadata.csv")
    return mask


def _resolve(folder: Path, name: str, what: str, meta: Path) -> Path:
    p = folder / name
    if not p.is_file():
        raise SmraboothError(f"{meta} names {name} but {p} does not exist: add the {what} or remove its row")
    return p


def subject_caption(name: str) -> str:
    return f"a picture of V* {name}"


def _plain_folder_rows(folder: Path, name: str | None) -> tuple[Path, list[tuple[str, str]]]:
    if not name:
        raise SmraboothError(f"{folder} has no {METADATA}: pass --name (e.g. --name dog) to caption its images "
                             "'a picture of V* dog', or prepare it with `smrabooth prepare-subject`")
    images = folder / "images" if (folder / "images").is_dir() else folder
    files = sorted(p.name for p in images.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise SmraboothError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) found in {images}")
    return images, [(f, subject_caption(name)) for f in files]


def read_subject_folder(folder: str | os.PathLike, require_masks: bool = True,
                        check_files: bool = True, name: str | None = None) -> list[SubjectItem]:
    """Items of a subject folder, checked: every listed image exists and reads, every mask exists,
    matches its image's size and is not empty. `require_masks=False` allows a folder without masks/
    (mask_path None). `check_files=False` skips decoding the files (only existence is checked).
    A folder without metadata.csv is read as a plain folder of images when `name` is given.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SmraboothError(f"subject folder {folder} does not exist")
    meta = folder / METADATA
    masks = folder / "masks"
    if meta.is_file():
        rows = read_metadata(meta)
        images = folder / "images"
    else:
        images, rows = _plain_folder_rows(folder, name)
        meta = images  # named in the errors below
    if not images.is_dir():
        raise SmraboothError(f"{folder} has no images/ folder (expected {folder}/images/<file_name>)")
    if require_masks and not masks.is_dir():
        raise SmraboothError(f"{folder} has no masks/ folder: make masks with smrabooth prepare-subject, "
                             "or train without masks")
    items, seen = [], set()
    for file_name, text in rows:
        if file_name in seen:
            raise SmraboothError(f"{meta} lists {file_name} twice")
        seen.add(file_name)
        if not text:
            raise SmraboothError(f"{meta}: {file_name} has an empty text (expected e.g. 'a picture of V* dog')")
        image = _resolve(images, file_name, "image", meta)
        mask = None
        if masks.is_dir():
            mask = masks / file_name
            if not mask.is_file():
                # masks are PNGs; accept the same stem with .png (photo.jpg -> masks/photo.png)
                alt = mask.with_suffix(".png")
                if alt.is_file():
                    mask = alt
                elif require_masks:
                    raise SmraboothError(f"no mask for {image}: expected {mask} (masks/ must hold one mask per "
                                         "image, with the same file name; or train without masks: --no-mask)")
                else:
                    mask = None
        if check_files:
            size = load_image(image).size
            if mask is not None:
                load_mask(mask, size)
        items.append(SubjectItem(image, mask, text))
    return items


def read_motion_folder(folder: str | os.PathLike, check_files: bool = False) -> list[MotionItem]:
    """Items of a motion folder, checked: every listed video exists (and decodes, with
    `check_files=True`), every text is non-empty. A text without the S* token gets a warning
    (the motion LoRA then binds to no token)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SmraboothError(f"motion folder {folder} does not exist")
    meta = folder / METADATA
    rows = read_metadata(meta)
    items, seen = [], set()
    for name, text in rows:
        if name in seen:
            raise SmraboothError(f"{meta} lists {name} twice")
        seen.add(name)
        if not text:
            raise SmraboothError(f"{meta}: {name} has an empty text (expected e.g. 'a person S* dribbling a ball')")
        path = _resolve(folder, name, "video", meta)
        if check_files:
            from ..video import read_video

            read_video(path)
        items.append(MotionItem(path, text))
    return items


def find_subject_folders(root: str | os.PathLike) -> dict[str, Path]:
    """name -> folder for every subject folder under ROOT/subject_customized (or ROOT itself if it is
    the subject_customized folder, or a single subject folder)."""
    root = Path(root)
    if (root / METADATA).is_file() and (root / "images").is_dir():
        return {root.name: root}
    base = root / "subject_customized" if (root / "subject_customized").is_dir() else root
    found = {p.name: p for p in sorted(base.iterdir()) if p.is_dir() and (p / METADATA).is_file()
             and (p / "images").is_dir()} if base.is_dir() else {}
    if not found:
        raise SmraboothError(f"no subject folders under {root} (expected {base}/<name>/{{images/, masks/, "
                             "metadata.csv}})")
    return found


def find_motion_folders(root: str | os.PathLike) -> dict[str, Path]:
    """motion -> folder for every motion folder under ROOT/motion_customized/video (or ROOT/video,
    ROOT itself holding motion folders, or a single motion folder)."""
    root = Path(root)
    if (root / METADATA).is_file() and not (root / "images").is_dir():
        return {root.name: root}
    for base in (root / "motion_customized" / "video", root / "video", root):
        if base.is_dir():
            found = {p.name: p for p in sorted(base.iterdir()) if p.is_dir() and (p / METADATA).is_file()
                     and not (p / "images").is_dir()}  # a folder with images/ is a subject folder
            if found:
                return found
    raise SmraboothError(f"no motion folders under {root} (expected {root}/motion_customized/video/<motion>/"
                         "{*.mp4, metadata.csv})")
