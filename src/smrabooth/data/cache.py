"""On-disk cache of precomputed training inputs (latents, features, prompt embeddings, flows).

Entries are safetensors files named by a hash of everything that determines them (file contents,
the weights of the models that computed them, sizes), so a changed image, model or setting misses the
cache instead of reusing a stale entry. Models enter a key by the content of their files
(`model_digest`), not by their name: weights replaced at the same path (a retrained bundle, an
updated snapshot) must not find the latents of the old ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import torch

from ..logs import get_logger

log = get_logger(__name__)


def file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _remembered_digest(path: Path, memo: dict) -> str:
    """file_digest, remembered by (size, mtime) so a returning run reads no weights (umT5-XXL: 11 GB)."""
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns]
    entry = memo.get(str(path))
    if entry is None or entry[:2] != stamp:
        entry = memo[str(path)] = [*stamp, file_digest(path)]
    return entry[2]


def _local_model_path(model: str) -> Path | None:
    """A folder or file as given, or a hub id's snapshot already on this machine; None if neither."""
    if os.path.exists(model):
        return Path(model)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - not a hub id, or not downloaded: the caller falls back to the name
        return None


def model_digest(model: str, parts: tuple[str, ...] = (), cache_dir=None) -> str:
    """A digest of the files of a model (a folder, a file, or a hub id with a local snapshot), or of its
    sub-folders `parts` (e.g. ("vae",)): what cache keys hold instead of the model's name. A name that
    resolves to nothing here (a model built in code) stands for itself. File digests are remembered in
    `cache_dir`/digests.json by (size, mtime)."""
    root = _local_model_path(model)
    if root is None:
        return f"name:{model}"
    memo_path = Path(cache_dir) / "digests.json" if cache_dir is not None else None
    memo = _read_memo(memo_path)
    before = dict(memo)
    h = hashlib.sha256()
    for part in parts or (".",):
        base = root / part
        if not base.exists():
            h.update(f"{part}: none".encode())
            continue
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for f in files:
            h.update(f"{part}/{f.relative_to(base) if f != base else f.name}".encode())
            h.update(_remembered_digest(f.resolve(), memo).encode())
    if memo_path is not None and memo != before:  # written only when a file was hashed
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_path.with_name(f".{memo_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo))
            os.replace(tmp, memo_path)
        except OSError as e:  # a full or read-only disk: the digests are computed again next time
            _warn(f"could not write {memo_path} ({e}); file digests will be computed again next time")
    return h.hexdigest()[:32]


def _read_memo(path: Path | None) -> dict:
    """digests.json: {file: [size, mtime_ns, digest]}; a damaged one (a disk that filled up, an edit) is
    dropped with a warning: the digests are computed again."""
    if path is None or not path.is_file():
        return {}
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        memo = e
    ok = isinstance(memo, dict) and all(isinstance(v, list) and len(v) == 3 and isinstance(v[2], str)
                                        for v in memo.values())
    if not ok:
        _warn(f"{path} is damaged; computing the file digests again")
        return {}
    return memo


def _warn(message: str) -> None:
    log.warning(message)


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    return Path(os.environ.get("SMRABOOTH_CACHE", Path.home() / ".cache" / "smrabooth"))


def cached(cache_dir: Path | None, key: str, compute) -> dict[str, torch.Tensor]:
    """Load `key` from the cache folder, or compute, store (atomically) and return it."""
    from safetensors.torch import load_file, save_file

    if cache_dir is None:
        return compute()
    from safetensors import SafetensorError

    cache_dir = Path(cache_dir)
    path = cache_dir / f"{key}.safetensors"
    if path.is_file():
        try:
            entry = load_file(str(path))
            if entry and all(v.is_floating_point() and bool(torch.isfinite(v).all()) or not v.is_floating_point()
                             for v in entry.values()):
                log.debug(f"cache hit: {path}")
                return entry
            raise ValueError("it holds no tensors, or non-finite ones")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:  # cut short by a full disk, damaged
            _warn(f"cache entry {path} is damaged ({' '.join(str(e).split())[:120]}); computing it again")
    log.debug(f"cache miss: computing {path.name}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in compute().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:  # a full or read-only disk: the run goes on without this entry
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        _warn(f"could not write the cache entry {path} ({' '.join(str(e).split())[:120]}); it is computed again "
              "next time")
    return tensors
