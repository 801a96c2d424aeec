"""The job queue: long work (the mask tool, training, generation, evaluation) runs one job at a time in a
worker process.

Each job is a JSON file in <workdir>/jobs/ (id, kind, params, status, error, result), written
atomically by the app process only, so a reloaded page, or a restarted app, finds every job where it
was. The worker is one child process (spawned, so a crash or a cancel never takes the app down); it
runs `runner(job, profile, workdir)` for each job and sends back its result. Cancel terminates the
worker; the next job starts a fresh one. Trainers checkpoint as they go, so a cancelled or interrupted
training continues with "resume".

Statuses: queued -> running -> done | failed | cancelled; a job that was running when the app stopped
is marked interrupted at the next start. A failed job's error is the one line the CLI prints for the
same failure ("smrabooth train-subject: error: ...").
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from smrabooth.errors import SmraboothError

# job kind -> the CLI command doing the same (the prefix of its error line)
COMMANDS = {"prepare_subject": "prepare-subject", "train_subject": "train-subject", "train_motion": "train-motion",
            "generate": "generate", "evaluate": "evaluate"}
FINISHED = ("done", "failed", "cancelled", "interrupted")


def write_json(path: Path, data: dict) -> None:
    """Atomic: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def error_line(kind: str, error: BaseException) -> str:
    command = COMMANDS.get(kind, kind)
    if isinstance(error, SmraboothError):
        return f"smrabooth {command}: error: {error}"
    return f"smrabooth {command}: {type(error).__name__}: {error} (the job's log has the traceback)"


def run_logged(runner: Callable, job: dict, profile: dict, workdir: str) -> dict:
    """Run one job with its prints going to jobs/<id>.log; never raises: a failure becomes the result."""
    log = Path(workdir) / "jobs" / f"{job['id']}.log"
    with open(log, "a", buffering=1) as f, redirect_stdout(f), redirect_stderr(f):
        try:
            return {"status": "done", "result": runner(job, profile, workdir) or {}}
        except BaseException as e:
            traceback.print_exc(file=f)
            if isinstance(e, KeyboardInterrupt):
                raise
            return {"status": "failed", "error": error_line(job["kind"], e)}


def worker_main(conn, runner: Callable, profile: dict, workdir: str) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(run_logged(runner, job, profile, workdir))


def default_runner(job: dict, profile: dict, workdir: str) -> dict:
    from .tasks import run_job

    return run_job(job, profile, workdir)


class JobQueue:
    """Jobs on disk, run one at a time by a background thread through one worker process."""

    def __init__(self, workdir, profile: dict, runner: Callable = default_runner, start: bool = True):
        self.folder = Path(workdir) / "jobs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.workdir, self.profile, self.runner = str(workdir), profile, runner
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancel: set[str] = set()
        self._proc = self._conn = None
        for job in self.list():  # a job that was running when the app stopped did not finish
            if job["status"] == "running":
                self._update(job["id"], status="interrupted", finished=time.time(),
                             error="interrupted: the app stopped while this job ran (a training resumes from its "
                                   "last checkpoint with Resume)")
        self._thread = None
        if start:
            self.start()

    # ------------------------------------------------------------------ records
    def path(self, job_id: str) -> Path:
        if not job_id or not all(c.isalnum() or c == "-" for c in job_id):
            raise SmraboothError(f"no job {job_id!r}")
        return self.folder / f"{job_id}.json"

    def get(self, job_id: str) -> dict | None:
        return read_json(self.path(job_id))

    def list(self, kind: str | None = None) -> list[dict]:
        jobs = [j for p in self.folder.glob("*.json") if (j := read_json(p))]
        return sorted((j for j in jobs if kind is None or j["kind"] == kind), key=lambda j: j["created"])

    def latest(self, kind: str) -> dict | None:
        jobs = self.list(kind)
        return jobs[-1] if jobs else None

    def _update(self, job_id: str, **fields) -> dict:
        with self._lock:
            job = self.get(job_id) or {}
            job.update(fields)
            write_json(self.path(job_id), job)
            return job

    def submit(self, kind: str, title: str, params: dict) -> dict:
        job = {"id": time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], "kind": kind, "title": title,
               "params": params, "status": "queued", "created": time.time(), "started": None, "finished": None,
               "error": None, "result": None}
        with self._lock:
            write_json(self.path(job["id"]), job)
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> dict:
        job = self.get(job_id)
        if job is None:
            raise SmraboothError(f"no job {job_id}")
        if job["status"] == "queued":
            return self._update(job_id, status="cancelled", finished=time.time(), error="cancelled before it started")
        if job["status"] == "running":
            self._cancel.add(job_id)
        return job

    def progress(self, job_id: str) -> dict:
        """What the job reported while it ran (tasks.report_progress): e.g. {'step': 3, 'steps': 20}."""
        return read_json(self.folder / f"{job_id}.progress") or {}

    def log_tail(self, job_id: str, lines: int = 20) -> str:
        p = self.folder / f"{job_id}.log"
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) if p.is_file() else ""

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="smrabooth-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._end_worker()

    def wait(self, job_id: str, timeout: float = 600) -> dict:
        """Block until the job has finished (tests and scripts)."""
        end = time.time() + timeout
        while time.time() < end:
            job = self.get(job_id)
            if job and job["status"] in FINISHED:
                return job
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} did not finish in {timeout} s")

    def _next(self) -> dict | None:
        queued = [j for j in self.list() if j["status"] == "queued"]
        return queued[0] if queued else None

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self._next()
            if job is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            self._run(job)

    def _worker(self):
        if self._proc is None or not self._proc.is_alive():
            ctx = multiprocessing.get_context("spawn")  # no fork of a threaded web server
            parent, child = ctx.Pipe()
            self._proc = ctx.Process(target=worker_main, args=(child, self.runner, self.profile, self.workdir),
                                     name="smrabooth-worker", daemon=True)
            self._proc.start()
            child.close()
            self._conn = parent
        return self._proc, self._conn

    def _end_worker(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        self._proc = self._conn = None

    def _run(self, job: dict) -> None:
        self._update(job["id"], status="running", started=time.time())
        proc, conn = self._worker()
        conn.send(self.get(job["id"]))
        while True:
            if job["id"] in self._cancel or self._stop.is_set():
                self._end_worker()
                self._cancel.discard(job["id"])
                self._update(job["id"], status="cancelled", finished=time.time(),
                             error="cancelled (a training resumes from its last checkpoint with Resume)")
                return
            if conn.poll(0.2):
                try:
                    outcome = conn.recv()
                except (EOFError, OSError):
                    outcome = None
                if outcome is not None:
                    self._update(job["id"], finished=time.time(), **outcome)
                    return
            if not proc.is_alive() and not conn.poll(0):
                self._end_worker()
                self._update(job["id"], status="failed", finished=time.time(),
                             error=f"smrabooth {COMMANDS.get(job['kind'], job['kind'])}: the worker process "
                                   f"stopped (exit code {proc.exitcode}); see the job's log")
                return
