"""The work folder: every upload, prepared data set, run, video and report the app makes lives here.

    <workdir>/subjects/<name>/uploads/     the user's photos (safe names)
    <workdir>/subjects/<name>/masks/       the user's masks, named like the photos
    <workdir>/subjects/<name>/data/        the prepared subject folder (prepare_subject)
    <workdir>/motions/<name>/uploads/      the user's clip
    <workdir>/motions/<name>/data/         the prepared motion folder (prepare_motion)
    <workdir>/runs/subject/<run>/          train_subject run folders
    <workdir>/runs/motion/<run>/           train_motion run folders
    <workdir>/videos/<id>/                 generated videos with settings.json
    <workdir>/evaluations/<id>/            metrics reports
    <workdir>/jobs/<id>.json, <id>.log     the job queue (jobs.py)

Nothing a user types becomes a path unchecked: names go through `safe_name`, and every path is
resolved inside the work folder by `Workdir.inside`.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from smrabooth.errors import SmraboothError

NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
KINDS = ("subject", "motion")


def safe_name(text: str, what: str = "name", max_len: int = 64) -> str:
    """A file or folder name made of letters, digits, '_', '-', '.' only; never '.', '..' or hidden.
    'My dog!' -> 'My_dog'; '../../etc' -> 'etc'."""
    name = NAME_RE.sub("_", str(text or "").strip()).strip("._-")[:max_len].strip("._-")
    if not name:
        raise SmraboothError(f"{what} {text!r} has no letters or digits: use e.g. 'dog' or 'dance_1'")
    return name


def display_name(text: str, what: str = "name", max_len: int = 64) -> str:
    """A name as captions and titles show it: the words the user typed, without punctuation or symbols
    ('my heart!' -> 'my heart', 'Rex (dog)' -> 'Rex dog'); letters of any script, digits, spaces, ' and -.
    The folder holding it is named by `safe_name` instead ('my_heart')."""
    import unicodedata

    text = unicodedata.normalize("NFC", str(text or ""))
    kept = "".join(c if c.isalnum() or c in " '-" else " " for c in text)
    name = " ".join(kept.split()).strip(" '-")[:max_len].strip(" '-")
    if not name:
        raise SmraboothError(f"{what} {text!r} has no letters or digits: use e.g. 'dog' or 'dance_1'")
    return name


def upload_path(f) -> Path:
    """The local path of an uploaded file: Gradio gives a str path (older versions an object with .name)."""
    return Path(f) if isinstance(f, (str, os.PathLike)) else Path(f.name)


def safe_file_name(path: str | Path, index: int = 0) -> str:
    """An uploaded file's name, made safe, keeping its extension (lower case)."""
    p = Path(str(path))
    suffix = NAME_RE.sub("", p.suffix.lower())[:8]
    try:
        stem = safe_name(p.stem, "file name")
    except SmraboothError:
        stem = f"file_{index:03d}"
    return stem + suffix


def upload_names(names: list[str]) -> list[str]:
    """Safe names (safe_file_name) for files uploaded together, distinct for distinct names: when two names make
    the same safe name ('dog 1.png', 'dog_1.png'), the one that needed no change keeps it and the others get a
    short digest of their own name ('dog_1-3f2a9c.png'): the same for a photo and its mask of one name."""
    import hashlib

    safe = [safe_file_name(n, i) for i, n in enumerate(names)]
    out = []
    for name, s in zip(names, safe):
        clash = any(t == s and other != name for other, t in zip(names, safe))
        if clash and Path(name).name != s:
            s = f"{Path(s).stem}-{hashlib.sha1(Path(name).name.encode()).hexdigest()[:6]}{Path(s).suffix}"
        out.append(s)
    return out


@dataclass
class Workdir:
    root: Path

    def __post_init__(self):
        self.root = Path(self.root).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise SmraboothError(f"--workdir {self.root} is a file: choose a folder")
        for sub in ("subjects", "motions", "runs/subject", "runs/motion", "videos", "evaluations", "jobs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def inside(self, path: str | Path) -> Path:
        """`path` (relative to the work folder, or absolute) resolved, refused when it leaves the folder."""
        p = Path(path)
        resolved = (p if p.is_absolute() else self.root / p).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise SmraboothError(f"{path} is outside the work folder {self.root}")
        return resolved

    def subject(self, name: str) -> Path:
        return self.root / "subjects" / safe_name(name, "subject name")

    def motion(self, name: str) -> Path:
        return self.root / "motions" / safe_name(name, "motion name")

    def runs(self, kind: str) -> Path:
        if kind not in KINDS:
            raise SmraboothError(f"run kind {kind!r}: choose subject or motion")
        return self.root / "runs" / kind

    def new_folder(self, parent: Path, stem: str) -> Path:
        """A fresh folder parent/<stem>-<n> (n counts up), created."""
        stem = safe_name(stem)
        for n in range(1, 10_000):
            folder = parent / f"{stem}-{n}"
            try:
                folder.mkdir(parents=True)
                return folder
            except FileExistsError:
                continue
        raise SmraboothError(f"{parent} holds too many folders named {stem}-N")

    def new_stamped(self, parent: str) -> Path:
        return self.new_folder(self.root / parent, time.strftime("%Y%m%d-%H%M%S"))

    def names(self, kind: str) -> list[str]:
        """Subjects or motions that have uploads, sorted."""
        folder = self.root / ("subjects" if kind == "subject" else "motions")
        return sorted(p.name for p in folder.iterdir() if p.is_dir())

    def save_uploads(self, files, folder: Path, replace: bool = False) -> list[Path]:
        """Copy uploaded files (paths Gradio gives) into `folder` under safe names, one file each (upload_names):
        'dog 1.png' and 'dog_1.png' stay two photos."""
        import filecmp

        folder = self.inside(folder)
        if replace and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sources = [upload_path(f) for f in files or []]
        out = []
        for src, name in zip(sources, upload_names([p.name for p in sources])):
            dst = folder / name
            n = 1
            while dst.exists() and not filecmp.cmp(src, dst, shallow=False):
                n += 1  # another file under this name (an earlier upload, or this one's): both are kept
                dst = folder / f"{Path(name).stem}-{n}{Path(name).suffix}"
            if dst in out:  # the same file given twice in one upload: kept once
                continue
            shutil.copyfile(src, dst)
            out.append(dst)
        return out
