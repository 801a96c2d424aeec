"""On-disk cache of precomputed training inputs (latents, features, prompt embeddings, flows).

Entries are safetensors files named by a hash of everything that determines them (file contents,
model, sizes), so a changed image or setting misses the cache instead of reusing a stale entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch


def file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    return Path(os.environ.get("SMRABOOTH_CACHE", Path.home() / ".cache" / "smrabooth"))


def cached(cache_dir: Path | None, key: str, compute) -> dict[str, torch.Tensor]:
    """Load `key` from the cache folder, or compute, store (atomically) and return it."""
    from safetensors.torch import load_file, save_file

    if cache_dir is None:
        return compute()
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{key}.safetensors"
    if path.is_file():
        return load_file(str(path))
    tensors = {k: v.detach().cpu().contiguous() for k, v in compute().items()}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    return tensors
