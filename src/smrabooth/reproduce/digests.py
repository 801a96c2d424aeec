"""What defines a job (content digests of settings, model and data files) and its done marker: a job counts as
done only when its marker's digest matches and its outputs still hash to what the marker says."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from ..data.cache import file_digest as file_sha  # SHA-256 of a file's bytes, read in chunks
from .jobs import Job


# ---------------------------------------------------------------- digests
def sha_of(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()




def folder_digest(folder) -> str:
    """Content digest of every file under a (small) data folder."""
    folder = Path(folder)
    return sha_of([(str(p.relative_to(folder)), file_sha(p)) for p in sorted(folder.rglob("*")) if p.is_file()])


def files_outside(kind: str, folder) -> list[Path]:
    """The files a training job reads (images, masks, clips) that do not lie in its data folder, resolved."""
    from ..data.folders import read_motion_folder, read_subject_folder
    from ..readers import is_inside

    if kind == "subject":
        items = read_subject_folder(folder, require_masks=False, check_files=False)
        files = [p for it in items for p in (it.image_path, it.mask_path) if p]
    else:
        files = [it.video_path for it in read_motion_folder(folder)]
    return sorted({Path(os.path.realpath(p)) for p in files if not is_inside(p, folder)})


def model_stamp(model: str) -> str:
    """A local model folder's files by (path, size, mtime): replacing a weight file changes it, without reading
    30 GB of weights on every call. A hub id stands for itself."""
    root = Path(model)
    if not root.exists():
        return f"name:{model}"
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return sha_of([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files])

# ---------------------------------------------------------------- done markers
def marker_path(out: Path, job: Job) -> Path:
    p = out / job.name
    return p.with_name(p.name + ".done.json")


def outputs_of(out: Path, job: Job) -> list[Path]:
    if job.kind in ("subject", "motion"):
        return [out / job.name / f for f in job.extra.get("finals", [job.extra["final"]])]
    return [out / job.name]


def read_marker(out: Path, job: Job) -> dict | None:
    """A job's done marker; None when there is none or it is damaged (the job then runs again)."""
    try:
        marker = json.loads(marker_path(out, job).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    ok = isinstance(marker, dict) and isinstance(marker.get("outputs"), dict)
    return marker if ok else None


def job_digest(out: Path, job: Job, done: dict[str, dict]) -> str | None:
    """The digest of a job's definition and of its inputs' contents; None while an input is not done."""
    if any(n not in done for n in job.needs):
        return None
    return sha_of({"kind": job.kind, "spec": job.spec, "inputs": {n: done[n]["outputs"] for n in job.needs}})


def check_done(out: Path, job: Job, digest: str | None) -> dict | None:
    """The job's marker if it is complete: same digest and every output hashing to what it recorded."""
    marker = read_marker(out, job)
    if digest is None or not marker or marker.get("digest") != digest:
        return None
    for p in outputs_of(out, job):
        rel = str(p.relative_to(out))
        if not p.is_file() or marker["outputs"].get(rel) != file_sha(p):
            return None
    return marker


def write_marker(out: Path, job: Job, digest: str, seconds: float) -> dict:
    marker = {"digest": digest, "outputs": {str(p.relative_to(out)): file_sha(p) for p in outputs_of(out, job)},
              "seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = marker_path(out, job)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(marker, indent=1) + "\n")
    os.replace(tmp, path)
    return marker


def scan(out: Path, jobs: list[Job]) -> tuple[dict[str, dict], dict[str, str]]:
    """Which jobs are done (name -> marker) and the digest of every job whose inputs are done."""
    done, digests = {}, {}
    for job in jobs:  # stage order: a job's inputs come before it
        digest = job_digest(out, job, done)
        if digest is not None:
            digests[job.name] = digest
            marker = check_done(out, job, digest)
            if marker is not None:
                done[job.name] = marker
    return done, digests
