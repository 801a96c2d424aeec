"""TEMPORARY minimal reader (replaced by the data-preparation branch's full reader)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..errors import SmraboothError


@dataclass
class SubjectItem:
    image_path: Path
    mask_path: Path | None
    text: str


def read_subject_folder(folder, name=None, require_masks=True) -> list[SubjectItem]:
    folder = Path(folder)
    rows = list(csv.DictReader((folder / "metadata.csv").open()))
    items = []
    for row in rows:
        image = folder / "images" / row["file_name"]
        mask = folder / "masks" / row["file_name"]
        if not image.is_file():
            raise SmraboothError(f"{folder / 'metadata.csv'} names {row['file_name']}, which is not in {folder / 'images'}")
        if require_masks and not mask.is_file():
            raise SmraboothError(f"no mask for {image}: expected {mask}")
        items.append(SubjectItem(image, mask if mask.is_file() else None, row["text"]))
    return items
