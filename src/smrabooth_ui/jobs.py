"""The job queue: long work (the mask tool, training, generation, evaluation) runs one job at a time in a
worker process.

Each job is a JSON file in <workdir>/jobs/ (id, kind, params, status, error, result), written
atomically by the app process only, so a reloaded page, or a restarted app, finds every job where it
was. The worker is one child process (spawned, so a crash or a cancel never takes the app down); it
runs `runner(job, profile, workdir)` for each job and sends back its result.

One at a time, by locks rather than by convention:
- the app holds <workdir>/jobs/app.lock for as long as it runs: a second app on the same work folder
  refuses to start, naming the first one's process;
- the worker holds <workdir>/jobs/worker.lock while it lives, and a new worker waits for it: even a
  worker left over from an app that was killed never runs beside another.

The worker never outlives the app: it ignores Ctrl+C (the app decides what becomes of the job), is
terminated by the app when the app stops (SIGTERM or SIGINT), and a watchdog thread ends it when the app's
process is gone (killed with SIGKILL, crashed).

Statuses: queued -> running -> done | failed | cancelled | interrupted. A job that was running when the app
stopped is interrupted (at shutdown, or at the next start when the app could not record it). A stopped
training (cancelled, interrupted, failed) continues from its last checkpoint with `resume`, which queues the
same job again; `remove` deletes a job that is not running (and what an unfinished one left behind). A failed
job's error is the one line the CLI prints for the same failure ("smrabooth train-subject: error: ...").
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import shutil
import signal
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
TRAININGS = ("train_subject", "train_motion")
FINAL_LORA = {"train_subject": "subject_lora.safetensors", "train_motion": "motion_lora.safetensors"}
INTERRUPTED = "interrupted: the app stopped while this job ran"
OWN_FOLDER = ("train_subject", "train_motion", "generate", "evaluate")  # kinds whose "out" folder is the job's own
JOB_FOLDERS = ("runs/subject", "runs/motion", "videos", "evaluations")  # where the work folder makes those folders


def write_json(path: Path, data: dict) -> None:
    """Atomic: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
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


def resumable(job: dict) -> bool:
    """A stopped training with a checkpoint and no final LoRA: `resume` continues it."""
    from smrabooth.train.common import list_checkpoints

    if job["kind"] not in TRAININGS or job["status"] not in ("cancelled", "interrupted", "failed"):
        return False
    run = Path(job["params"]["out"])
    return bool(list_checkpoints(run)) and not (run / FINAL_LORA[job["kind"]]).exists()


# ------------------------------------------------------------------------------------------------- locks
class FileLock:
    """An exclusive flock on a file holding the holder's pid; released when the holder's process ends."""

    def __init__(self, path: Path):
        self.path, self.fd = Path(path), None

    def acquire(self, block: bool = False) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return True

    def holder(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None


# ------------------------------------------------------------------------------------------------ worker
def run_logged(runner: Callable, job: dict, profile: dict, workdir: str) -> dict:
    """Run one job with its prints going to jobs/<id>.log; never raises: a failure becomes the result."""
    log = Path(workdir) / "jobs" / f"{job['id']}.log"
    with open(log, "a", buffering=1) as f, redirect_stdout(f), redirect_stderr(f):
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {job['title']} (worker {os.getpid()})", flush=True)
        try:
            return {"status": "done", "result": runner(job, profile, workdir) or {}}
        except BaseException as e:
            traceback.print_exc(file=f)
            if isinstance(e, KeyboardInterrupt):
                raise
            return {"status": "failed", "error": error_line(job["kind"], e)}


def watch_parent(poll: float = 0.5) -> None:
    """End this process as soon as the process that started it is gone (a killed app leaves no worker)."""
    parent = multiprocessing.parent_process()
    first = os.getppid()

    def watch():
        while True:
            gone = os.getppid() != first
            if parent is not None and parent.sentinel is not None:
                from multiprocessing.connection import wait

                gone = gone or bool(wait([parent.sentinel], timeout=poll))
            else:
                time.sleep(poll)
            if gone:
                os._exit(0)

    threading.Thread(target=watch, name="smrabooth-watch-parent", daemon=True).start()


def worker_main(conn, runner: Callable, profile: dict, workdir: str) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole terminal; the app decides
    watch_parent()
    lock = FileLock(Path(workdir) / "jobs" / "worker.lock")
    lock.acquire(block=True)  # a worker of an app that was killed may still be finishing a step
    conn.send({"worker": os.getpid()})
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(run_logged(runner, job, profile, workdir))


def default_runner(job: dict, profile: dict, workdir: str) -> dict:
    from .tasks import run_job

    return run_job(job, profile, workdir)


# ------------------------------------------------------------------------------------------------- queue
class JobQueue:
    """Jobs on disk, run one at a time by a background thread through one worker process."""

    def __init__(self, workdir, profile: dict, runner: Callable = default_runner, start: bool = True,
                 on_finish: Callable[[dict], None] | None = None):
        self.folder = Path(workdir) / "jobs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.workdir, self.profile, self.runner, self.on_finish = str(workdir), profile, runner, on_finish
        self.app_lock = FileLock(self.folder / "app.lock")
        if not self.app_lock.acquire():
            raise SmraboothError(f"another smrabooth ui (process {self.app_lock.holder()}) uses the work folder "
                                 f"{Path(workdir).resolve()}: stop it, or start this one with another --workdir")
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancel: set[str] = set()
        self._proc = self._conn = None
        self.worker_pid: int | None = None
        self._wait_for_old_worker()
        for job in self.list():  # a job that was running when the app stopped did not finish here
            if job["status"] == "running":
                self._settle_unrecorded(job)
        self._thread = None
        if start:
            self.start()

    def _wait_for_old_worker(self, timeout: float = 15) -> None:
        """A worker of an app that was killed ends within a second (watch_parent); wait for it, then end it."""
        lock = FileLock(self.folder / "worker.lock")
        end = time.time() + timeout
        while not lock.acquire():
            pid = lock.holder()
            if time.time() > end and pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)
        lock.release()

    def _settle_unrecorded(self, job: dict) -> None:
        """A job left 'running' by an app that could not record its end (killed): done when its output is
        whole, else interrupted."""
        final = Path(job["params"].get("out", "")) / FINAL_LORA.get(job["kind"], "")
        if job["kind"] in TRAININGS and final.is_file():
            self._update(job["id"], status="done", finished=final.stat().st_mtime, error=None,
                         result={"lora": str(final), "run": job["params"]["out"]}, note="finished after the app stopped")
        else:
            self._update(job["id"], status="interrupted", finished=time.time(), error=INTERRUPTED)

    # ------------------------------------------------------------------ records
    def path(self, job_id: str) -> Path:
        if not job_id or not all(c.isalnum() or c == "-" for c in job_id):
            raise SmraboothError(f"no job {job_id!r}")
        return self.folder / f"{job_id}.json"

    def get(self, job_id: str) -> dict | None:
        return read_json(self.path(job_id))

    def list(self, kind: str | None = None) -> list[dict]:
        jobs = [j for p in self.folder.glob("*.json") if (j := read_json(p)) and "kind" in j]
        return sorted((j for j in jobs if kind is None or j["kind"] == kind), key=lambda j: j["created"])

    def latest(self, kind: str) -> dict | None:
        jobs = self.list(kind)
        return jobs[-1] if jobs else None

    def running(self) -> dict | None:
        return next((j for j in self.list() if j["status"] == "running"), None)

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

    def resume(self, job_id: str) -> dict:
        """Queue a stopped training again; it continues from its last checkpoint, its log and curves intact."""
        job = self.get(job_id)
        if job is None:
            raise SmraboothError(f"no job {job_id}")
        if not resumable(job):
            raise SmraboothError(f"nothing to resume: {job['title']} is {job['status']}" + (
                "" if job["kind"] not in TRAININGS else " and has no checkpoint to continue from"))
        params = {**job["params"], "resume": True}
        job = self._update(job_id, status="queued", params=params, error=None, finished=None,
                           resumed=(job.get("resumed") or 0) + 1, queued_at=time.time())
        self._wake.set()
        return job

    def remove(self, job_id: str) -> dict:
        """Delete a job that is not running; what an unfinished one left behind (its run, video or report
        folder) goes too, a finished job's outputs stay."""
        job = self.get(job_id)
        if job is None:
            raise SmraboothError(f"no job {job_id}")
        if job["status"] == "running":
            raise SmraboothError(f"{job['title']} is running: cancel it first")
        if job["status"] != "done" and job["kind"] in OWN_FOLDER and job["params"].get("out"):
            out = Path(job["params"]["out"]).resolve()
            root = Path(self.workdir).resolve()
            if out.parent in {root / f for f in JOB_FOLDERS}:  # a job's own folder, never the uploads or beyond
                shutil.rmtree(out, ignore_errors=True)
                flow = out.parent / f"{out.name}.flow.mp4"
                flow.unlink(missing_ok=True)
        for suffix in (".json", ".log", ".progress"):
            (self.folder / f"{job_id}{suffix}").unlink(missing_ok=True)
        return job

    def progress(self, job_id: str) -> dict:
        """What the job reported while it ran (tasks.report_progress): e.g. {'step': 3, 'steps': 20}."""
        return read_json(self.folder / f"{job_id}.progress") or {}

    def log_tail(self, job_id: str, lines: int = 20) -> str:
        p = self.folder / f"{job_id}.log"
        if not p.is_file():
            return ""
        text = p.read_bytes().decode(errors="replace")  # not read_text: its newline translation turns \r into \n
        return "\n".join(text.split("\n")[-lines:])

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="smrabooth-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop with the app: the running job becomes interrupted (a training resumes from its checkpoint), the
        worker is ended and waited for, and the work folder is free for the next app."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._end_worker()
        job = self.running()
        if job is not None:  # the loop could not record it (it was stuck): the next start would
            self._update(job["id"], status="interrupted", finished=time.time(), error=INTERRUPTED)
        self.app_lock.release()

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
            self.worker_pid = self._proc.pid
        return self._proc, self._conn

    def _end_worker(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        self._proc = self._conn = None

    def _finish(self, job_id: str, **fields) -> None:
        job = self._update(job_id, finished=time.time(), **fields)
        if self.on_finish is not None:
            try:
                self.on_finish(job)
            except Exception:  # noqa: BLE001 - bookkeeping (measured costs) must never stop the queue
                traceback.print_exc()

    def _run(self, job: dict) -> None:
        proc, conn = self._worker()
        self._update(job["id"], status="running", started=time.time(), worker=proc.pid)
        conn.send(self.get(job["id"]))  # read once the worker holds its lock
        while True:
            if self._stop.is_set():  # the app stops: the job did not finish, nor was it cancelled
                self._end_worker()
                self._update(job["id"], status="interrupted", finished=time.time(), error=INTERRUPTED)
                return
            if job["id"] in self._cancel:
                self._end_worker()
                self._cancel.discard(job["id"])
                self._finish(job["id"], status="cancelled",
                             error="cancelled" + (" (Resume continues from its last checkpoint)"
                                                  if job["kind"] in TRAININGS else ""))
                return
            if conn.poll(0.2):
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    message = None
                if message is not None and "worker" in message:  # the worker holds its lock: it runs the job
                    continue
                if message is not None:
                    self._finish(job["id"], **message)
                    return
            if not proc.is_alive() and not conn.poll(0):
                self._end_worker()
                self._finish(job["id"], status="failed",
                             error=f"smrabooth {COMMANDS.get(job['kind'], job['kind'])}: the worker process "
                                   f"stopped (exit code {proc.exitcode}); see the job's log")
                return
