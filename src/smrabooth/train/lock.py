"""One trainer per run folder: `RUN_DIR/.lock` holds the PID, host and start time of the process training in it.

A second trainer on a live folder is refused whatever its flags (--overwrite or --resume would otherwise
delete or rewrite the folder under the first). A lock whose process is gone (killed, crashed; same host) is
stale and taken over with a warning. The process holding a lock may take it again (a notebook that retries
after an error); it is released when training ends, or when the process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
from pathlib import Path

from ..errors import SmraboothError
from ..logs import get_logger

log = get_logger(__name__)

LOCK_NAME = ".lock"
_held: set[Path] = set()


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused PID from the original."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def read_lock(run_dir) -> dict | None:
    try:
        holder = json.loads((Path(run_dir) / LOCK_NAME).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError):
        return {}  # half-written or garbage: treated as stale
    return holder if isinstance(holder, dict) else {}  # not what acquire writes: garbage too


def is_live(holder: dict) -> bool:
    """Whether the process that wrote `holder` still runs. On another host it cannot be checked: assumed live."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = _process_start(pid)
    return holder.get("start") is None or started is None or started == holder.get("start")


def check_unlocked(run_dir) -> None:
    """Raise if another live process trains in `run_dir` (nothing is changed)."""
    holder = read_lock(run_dir)
    if holder is None or holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        return
    if is_live(holder):
        where = "" if holder.get("host") == socket.gethostname() else f" on host {holder.get('host')}"
        raise SmraboothError(
            f"--out {run_dir} is in use by a running training (pid {holder.get('pid')}{where}, since "
            f"{holder.get('since', '?')}): wait for it to end or stop it, or choose another --out (if no training "
            f"runs there, delete {Path(run_dir) / LOCK_NAME})")


def acquire(run_dir) -> Path:
    """Take the lock of `run_dir` (created if missing) for this process; raise if a live process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    for _ in range(3):
        check_unlocked(run_dir)
        holder = read_lock(run_dir)
        if holder is not None and holder.get("pid") == os.getpid():
            break  # ours already
        if holder is not None:
            log.warning(f"{path} was left by a training that is gone (pid {holder.get('pid')}); taking it over")
            path.unlink(missing_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue  # another process took it between our check and our create: check again
        with os.fdopen(fd, "w") as f:
            json.dump(_me(), f)
        break
    else:
        raise SmraboothError(f"--out {run_dir}: could not take its lock {path}")
    _held.add(path)
    return path


def release(run_dir) -> None:
    """Give the lock of `run_dir` back, if this process holds it."""
    path = Path(run_dir) / LOCK_NAME
    holder = read_lock(run_dir)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)
    _held.discard(path)


@atexit.register
def _release_all() -> None:
    for path in list(_held):
        try:
            release(path.parent)
        except OSError:
            pass
