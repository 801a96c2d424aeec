"""Reading training folders.

Subject folder, the authors' layout (`subject_customized/<name>/`):
    images/0001.png ...     the photos
    masks/0001.png ...      binary masks, same file names as the images
    metadata.csv            file_name,text   ("0001.png","a picture of V* dog")
or a plain folder of images plus a subject name (captions become "a picture of V* <name>"),
with masks in a `masks/` subfolder (same stems) unless masks are not used.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..errors import SmraboothError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass
class SubjectItem:
    image_path: Path
    mask_path: Path | None
    text: str


def subject_caption(name: str) -> str:
    return f"a picture of V* {name}"


def _find_mask(masks_dir: Path, image_name: str) -> Path | None:
    exact = masks_dir / image_name
    if exact.is_file():
        return exact
    stem = Path(image_name).stem
    matches = [p for p in masks_dir.glob(f"{stem}.*") if p.suffix.lower() in IMAGE_SUFFIXES] if masks_dir.is_dir() else []
    return matches[0] if matches else None


def read_subject_folder(folder, name: str | None = None, require_masks: bool = True) -> list[SubjectItem]:
    """The training images of a subject folder, with clear errors for anything missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SmraboothError(f"subject folder {folder} does not exist")
    metadata = folder / "metadata.csv"
    masks_dir = folder / "masks"
    if metadata.is_file():
        with metadata.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"file_name", "text"} <= set(rows[0]):
            raise SmraboothError(f"{metadata} needs the columns file_name,text and at least one row")
        images_dir = folder / "images"
        entries = []
        for row in rows:
            image = images_dir / row["file_name"]
            if not image.is_file():
                raise SmraboothError(f"{metadata} names {row['file_name']}, which is not in {images_dir}")
            entries.append((image, row["text"].strip() or (subject_caption(name) if name else "")))
    else:
        if not name:
            raise SmraboothError(f"{folder} has no metadata.csv: pass --name (e.g. --name dog) to caption its "
                                 f"images 'a picture of V* dog', or prepare it with `smrabooth prepare-subject`")
        images_dir = folder / "images" if (folder / "images").is_dir() else folder
        files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        entries = [(p, subject_caption(name)) for p in files]
    if not entries:
        raise SmraboothError(f"no images found in {folder}")
    items = []
    for image, text in entries:
        if not text:
            raise SmraboothError(f"{metadata} has an empty caption for {image.name}")
        mask = _find_mask(masks_dir, image.name)
        if require_masks and mask is None:
            raise SmraboothError(f"no mask for {image}: expected {masks_dir / image.name} (make masks with "
                                 f"`smrabooth prepare-subject`, or train without masks with --no-mask)")
        items.append(SubjectItem(image, mask, text))
    return items
