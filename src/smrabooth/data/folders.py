"""The training folder layouts, and the readers the trainers call.

Two layouts of metadata.csv are read, with no conversion step:

smrabooth's (what `smrabooth prepare-subject` / `prepare-motion` write), columns `file_name,text`:
    subject DIR/images/0001.png, DIR/masks/0001.png, DIR/metadata.csv  (file_name relative to DIR/images;
            the mask has the image's file name, or its stem with .png)
    motion  DIR/clip_0.mp4 ..., DIR/metadata.csv                        (file_name relative to DIR)
  or a plain folder of images plus a subject name (`--name dog`): captions become
  "a picture of V* dog", masks (if any) in DIR/masks/ with the same file names.

the authors' released dataset, as they ship it:
    ROOT/subject_customized/<name>/metadata.csv   columns `video,mask,prompt`:
        images/00.png,masks/00.png,A picture of sks dog
      paths relative to the subject folder (their dataset release) or to subject_customized, the folder
      above (dog/images/00.jpg, the example in their code release, whose training script passes
      subject_customized as the dataset base path); prompts.txt, videos.txt, videos/ and prompt.json
      beside it are left alone.
    ROOT/motion_customized/video/<motion>/metadata.csv   columns `video,prompt`:
        dog_walking/00.mp4,"a dog is vvt walking"
      paths relative to motion_customized/video, the folder above (their training script's dataset base
      path); prompts.json and eval_prompts.json are left alone, combine_test_prompts.json is read by
      `smrabooth prompts`.
Each path is looked up in the folder first, then in the folder above (the motion order is the reverse),
so either form works in either layout. Captions are trained on as written: `sks`/`vvt` stay what the
LoRAs bind to (see tokens.py). A subject mask is a binary image with the size of its image.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SmraboothError
from .tokens import MOTION_TOKENS, SUBJECT_TOKENS, find_token

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
VIDEO_EXTS = {".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif"}
METADATA = "metadata.csv"


OURS = ("file_name", "text")
AUTHORS_SUBJECT = ("video", "mask", "prompt")
AUTHORS_MOTION = ("video", "prompt")
_LAYOUTS = {"subject": (OURS, AUTHORS_SUBJECT), "motion": (OURS, AUTHORS_MOTION)}


@dataclass
class SubjectItem:
    image_path: Path
    mask_path: Path | None
    text: str

    @property
    def token(self) -> str | None:
        return find_token(self.text, SUBJECT_TOKENS)


@dataclass
class MotionItem:
    video_path: Path
    text: str

    @property
    def token(self) -> str | None:
        return find_token(self.text, MOTION_TOKENS)


@dataclass
class Row:
    file: str
    text: str
    mask: str | None = None  # named per row only in the authors' subject layout


@dataclass
class Metadata:
    columns: tuple[str, ...]  # OURS, AUTHORS_SUBJECT or AUTHORS_MOTION
    rows: list[Row]

    @property
    def authors(self) -> bool:
        return self.columns != OURS


def _accepted(kind: str) -> str:
    ours, theirs = _LAYOUTS[kind]
    return f"{','.join(ours)} (smrabooth's layout) or {','.join(theirs)} (the authors' released layout)"


def read_metadata(path: str | os.PathLike, kind: str = "subject") -> Metadata:
    """The rows of a `kind` ('subject' or 'motion') folder's metadata.csv in either layout, with clear
    errors for a missing file, an unknown column set or an empty table."""
    from ..readers import read_csv

    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"{path} does not exist: a training folder needs a metadata.csv with columns "
                             f"{_accepted(kind)}; smrabooth prepare-subject / prepare-motion write one")
    fields, records = read_csv(path, "metadata file")  # a BOM, Latin-1, an unquoted comma: readers.read_csv
    columns = next((c for c in _LAYOUTS[kind] if set(c) <= set(fields)), None)
    if columns is None:
        raise SmraboothError(f"{path} has the columns {','.join(fields) or '(none)'}: a {kind} folder's "
                             f"metadata.csv needs {_accepted(kind)}")
    file_col, text_col = columns[0], columns[-1]
    rows = []
    for i, row in records:
        if not row[file_col]:
            raise SmraboothError(f"{path} line {i}: empty {file_col}")
        for name in (row[file_col], row.get("mask") if "mask" in columns else None):
            check_relative(name, path, i)
        rows.append(Row(row[file_col], row[text_col], (row["mask"] or None) if "mask" in columns else None))
    if not rows:
        raise SmraboothError(f"{path} lists no files")
    return Metadata(columns, rows)


def check_relative(name: str | None, meta, line: int) -> None:
    """A file named in metadata.csv lies in the data folder (or, in the authors' layout, the folder above): no
    absolute path, no '..' (images/../masks/a.png would make a photo its own mask)."""
    if not name:
        return
    parts = Path(name.replace("\\", "/")).parts
    if Path(name).is_absolute() or name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise SmraboothError(f"{meta} line {line}: {name!r} is not a path inside the data folder (no absolute "
                             "paths, no '..'): name files relative to the folder, e.g. 0001.png")


def write_metadata(path: str | os.PathLike, rows: list[tuple[str, str]]) -> Path:
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "text"])
        w.writerows(rows)
    return path


def load_image(path: str | os.PathLike):
    """PIL RGB image, with a clear error for unreadable files; 16-bit and palette images converted exactly
    (readers.read_image_rgb)."""
    from ..readers import read_image_rgb

    return read_image_rgb(path, "image")


def load_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """bool (H, W) from a mask PNG (any pixel > 127 in any channel is subject).

    `size` (width, height) is the image's size; a mask of another size is an error, since a
    resized mask would no longer line up with the subject.
    """
    from ..readers import read_image_gray

    path = Path(path)
    arr = np.asarray(read_image_gray(path, "mask image"))
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


def _resolve_authors(bases: tuple[Path, Path], name: str, what: str, meta: Path) -> Path:
    """The authors' paths: relative to the folder or to the folder above, whichever holds the file."""
    for base in bases:
        if (base / name).is_file():
            return base / name
    raise SmraboothError(f"{meta} names {name} but neither {bases[0] / name} nor {bases[1] / name} exists: "
                         f"add the {what} or remove its row")


def subject_caption(name: str) -> str:
    return f"a picture of V* {name}"


def _plain_folder_rows(folder: Path, name: str | None) -> tuple[Path, list[Row]]:
    if not name:
        raise SmraboothError(f"{folder} has no {METADATA}: pass --name (e.g. --name dog) to caption its images "
                             "'a picture of V* dog', or prepare it with `smrabooth prepare-subject`")
    images = folder / "images" if (folder / "images").is_dir() else folder
    files = sorted(p.name for p in images.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise SmraboothError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) found in {images}")
    return images, [Row(f, subject_caption(name)) for f in files]


def _our_mask(masks: Path, file_name: str, image: Path, require_masks: bool) -> Path | None:
    if not masks.is_dir():
        return None
    mask = masks / file_name
    if mask.is_file():
        return mask
    # masks are PNGs; accept the same stem with .png (photo.jpg -> masks/photo.png)
    if mask.with_suffix(".png").is_file():
        return mask.with_suffix(".png")
    if require_masks:
        raise SmraboothError(f"no mask for {image}: expected {mask} (masks/ must hold one mask per "
                             "image, with the same file name; or train without masks: --no-mask)")
    return None


def read_subject_folder(folder: str | os.PathLike, require_masks: bool = True,
                        check_files: bool = True, name: str | None = None, use_masks: bool = True) -> list[SubjectItem]:
    """Items of a subject folder in either layout (module docstring), checked: every listed image exists
    and reads, every mask exists, matches its image's size and is not empty. `require_masks=False`
    allows a folder without masks (mask_path None). `check_files=False` skips decoding the files (only
    existence is checked). A folder without metadata.csv is read as a plain folder of images when
    `name` is given. `use_masks=False` (--no-mask) leaves every mask out, unread: a broken or black one is no
    matter then.
    """
    require_masks = require_masks and use_masks
    folder = Path(folder)
    if not folder.is_dir():
        raise SmraboothError(f"subject folder {folder} does not exist")
    meta = folder / METADATA
    masks = folder / "masks"
    authors = False
    if meta.is_file():
        table = read_metadata(meta, "subject")
        rows, authors, images = table.rows, table.authors, folder / "images"
    else:
        images, rows = _plain_folder_rows(folder, name)
        meta = images  # named in the errors below
    if not authors:
        if not images.is_dir():
            raise SmraboothError(f"{folder} has no images/ folder (expected {folder}/images/<file_name>)")
        if require_masks and not masks.is_dir():
            raise SmraboothError(f"{folder} has no masks/ folder: make masks with smrabooth prepare-subject, "
                                 "or train without masks")
    bases = (folder, folder.parent)
    items, seen = [], set()
    for row in rows:
        if row.file in seen:
            raise SmraboothError(f"{meta} lists {row.file} twice")
        seen.add(row.file)
        if not row.text:
            raise SmraboothError(f"{meta}: {row.file} has an empty text (expected e.g. 'a picture of V* dog')")
        if authors:
            image = _resolve_authors(bases, row.file, "image", meta)
            mask = _resolve_authors(bases, row.mask, "mask", meta) if row.mask and use_masks else None
            if mask is None and require_masks:
                raise SmraboothError(f"{meta}: {row.file} has no mask (its mask column is empty): add one, "
                                     "or train without masks: --no-mask")
        else:
            image = _resolve(images, row.file, "image", meta)
            mask = _our_mask(masks, row.file, image, require_masks) if use_masks else None
        if check_files:
            size = load_image(image).size
            if mask is not None:
                load_mask(mask, size)
        items.append(SubjectItem(image, mask, row.text))
    return items


def read_motion_folder(folder: str | os.PathLike, check_files: bool = False) -> list[MotionItem]:
    """Items of a motion folder in either layout (module docstring), checked: every listed video exists
    (and, with `check_files=True`, its first frame decodes and is large enough to learn a motion from), every text
    is non-empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SmraboothError(f"motion folder {folder} does not exist")
    meta = folder / METADATA
    table = read_metadata(meta, "motion")
    items, seen = [], set()
    for row in table.rows:
        if row.file in seen:
            raise SmraboothError(f"{meta} lists {row.file} twice")
        seen.add(row.file)
        if not row.text:
            raise SmraboothError(f"{meta}: {row.file} has an empty text (expected e.g. 'a person S* dribbling a "
                                 "ball')")
        if table.authors:  # their paths start at motion_customized/video, the folder above
            path = _resolve_authors((folder.parent, folder), row.file, "video", meta)
        else:
            path = _resolve(folder, row.file, "video", meta)
        if check_files:
            from ..video import read_video
            from .motion import check_clip_size

            check_clip_size(path, *read_video(path, max_frames=1).frames.shape[1:3])
        items.append(MotionItem(path, row.text))
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
