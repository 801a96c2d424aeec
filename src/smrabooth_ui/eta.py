"""How long a job takes: per-step costs measured on this machine, the estimate before a job starts (with a
warning when it would take more than WARN_SECONDS), the time left while it runs, and how often a training
checkpoints (so that a resume redoes at most CHECKPOINT_SECONDS of work).

A job's cost is `overhead + steps x per_step`: the overhead is everything but the steps (starting the
worker, loading the model, caching latents and features, saving), a step one optimizer step or one
denoising step of one video. After every finished job the app records what it measured in
<workdir>/jobs/costs.json, under a key naming the model, the device, the job kind and what changes a
step's cost (SuRA, MoRA, the recipe, the video size). An estimate says what it rests on:

- measured here: the mean of the jobs with the same key on this machine (the newest ones weigh most);
- a reference timing: the bundled SMRA-Sprites model on a 2-core CPU (REFERENCE, measured by
  scripts/measure_ui_step_costs.py), or Wan2.1 1.3B on a GPU from the paper's training times;
- nothing: no estimate, and no warning, until a first job has measured it.

While a job runs, the time left comes from its own steps so far (a training's log.jsonl, a generation's
progress), not from the estimate.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

WARN_SECONDS = 600  # a job longer than this asks for a second click
CHECKPOINT_SECONDS = 20  # a training checkpoints this often by its estimated step cost: a resume redoes under a
# minute even on a machine three times slower than the estimate

# The bundled SMRA-Sprites model on a CPU: (seconds per step, overhead seconds), the demo's settings, measured
# by scripts/measure_ui_step_costs.py (OMP_NUM_THREADS=1) on the 2-core development machine while other work
# kept it busy (load about 14), so rather slow than fast. A checkpoint at every step cost less than that
# run's noise. The overheads count the worker's start and the model's load of a first job.
SPRITES_CPU = {
    "train_subject:sura": (1.0, 43.0), "train_subject:plain": (0.24, 1.0),
    "train_motion:mora": (27.5, 32.0), "train_motion:plain": (0.84, 7.0),
    "generate": (1.9, 1.0),
}
# Wan2.1 1.3B on a GPU: the paper trains 300 subject steps in about 30 minutes and 400 motion steps in about
# an hour (supplementary 2.4); it gives no overhead and no sampling time.
WAN_GPU_PAPER = {"train_subject:sura": (6.0, 0.0), "train_motion:mora": (9.0, 0.0)}


@dataclass
class Estimate:
    seconds: float | None  # None: unknown
    basis: str  # what the number rests on, in words
    per_step: float | None = None
    overhead: float | None = None
    steps: int | None = None

    @property
    def known(self) -> bool:
        return self.seconds is not None

    def text(self) -> str:
        if self.seconds is None:
            return f"no estimate yet ({self.basis})"
        return f"{duration(self.seconds)} ({self.basis})"


def duration(seconds: float) -> str:
    """'about 40 s', 'about 3 min 20 s', 'about 1 h 05 min'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"about {s} s"
    if s < 3600:
        return f"about {s // 60} min {s % 60:02d} s"
    return f"about {s // 3600} h {s % 3600 // 60:02d} min"


# ------------------------------------------------------------------------------------------------ keys
def variant(kind: str, params: dict) -> str:
    """The part of a job's cost key that changes the cost of a step."""
    if kind == "train_subject":
        return f"{kind}:{'sura' if params.get('use_sura') else 'plain'}"
    if kind == "train_motion":
        if not params.get("use_mora"):
            return f"{kind}:plain"
        top = float(params.get("mora_max_sigma") or 1.0)  # MoRA on the draws at or below this sigma only
        return f"{kind}:mora" + (f"<={top:g}" if top < 1 else "")
    return kind


def mora_share(params: dict) -> float:
    """The share of a motion training's steps that run MoRA: every one, or under --mora-max-sigma the share of
    its recipe's training table at or below it."""
    from smrabooth.recipes import DEFAULT_RECIPE, get_recipe
    from smrabooth.schedules import draw_share

    top = float(params.get("mora_max_sigma") or 1.0)
    if top >= 1:
        return 1.0
    motion = get_recipe(params.get("recipe") or DEFAULT_RECIPE).motion
    return draw_share(top, motion.shift, motion.timestep_rounding)


def cost_key(profile, kind: str, params: dict) -> str:
    """model | device | kind:variant | recipe | size: jobs with one key cost alike per step."""
    if kind == "generate":
        c = params.get("config") or {}
        size = f"{c.get('frames')}x{c.get('height')}x{c.get('width')}:cfg{'on' if c.get('guidance', 1) > 1 else 'off'}"
        recipe = ""
    else:
        size, recipe = "", params.get("recipe") or ""
    model = "sprites" if profile.sprites else profile.model
    return "|".join([model, profile.device, variant(kind, params), recipe, size])


# what one step of a job is, where it is not an optimizer or denoising step
UNITS = {"evaluate": "video and metric", "prepare_subject": "photo"}


def job_steps(kind: str, params: dict) -> int | None:
    """Steps of a job: training steps, denoising steps over every video it renders, videos x metrics of an
    evaluation, photos of the mask tool."""
    if kind in ("train_subject", "train_motion"):
        return int(params["steps"])
    if kind == "generate":
        c = params["config"]
        videos = 2 if params.get("baseline") and (params.get("subject_lora") or params.get("motion_lora")) else 1
        return int(c["steps"]) * videos
    if kind == "evaluate":
        return len(params.get("items") or []) * len(params.get("metrics") or []) or None
    if kind == "prepare_subject":
        return params.get("photos") or None
    return None


# ------------------------------------------------------------------------------------------- measured
class Costs:
    """<workdir>/jobs/costs.json: {key: {"per_step": s, "overhead": s, "jobs": n}}, written by the app process."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> dict | None:
        return self.read().get(key)

    def record(self, key: str, per_step: float, overhead: float) -> None:
        from .jobs import write_json

        data = self.read()
        old = data.get(key)
        if old:  # the newest job weighs half: costs drift as the machine's load changes
            per_step, overhead = (old["per_step"] + per_step) / 2, (old["overhead"] + overhead) / 2
        data[key] = {"per_step": round(per_step, 4), "overhead": round(overhead, 2),
                     "jobs": (old or {}).get("jobs", 0) + 1, "time": time.time()}
        write_json(self.path, data)


def reference(profile, kind: str, params: dict) -> tuple[tuple[float, float], str] | None:
    """A reference cost for this job when nothing was measured here: ((per_step, overhead), basis)."""
    v = variant(kind, params)
    if profile.sprites and profile.device == "cpu" and v.startswith("train_motion:mora<="):
        # a step without MoRA, plus MoRA's extra on the share of steps that run it
        (mora, overhead), (plain, _) = SPRITES_CPU["train_motion:mora"], SPRITES_CPU["train_motion:plain"]
        share = mora_share(params)
        return (plain + share * (mora - plain), overhead), (
            f"reference timing of this model on a busy 2-core CPU, MoRA on {share:.1%} of the steps; not measured "
            f"on this machine yet")
    if profile.sprites and profile.device == "cpu" and v in SPRITES_CPU:
        return SPRITES_CPU[v], "reference timing of this model on a busy 2-core CPU; not measured on this machine yet"
    if not profile.sprites and profile.device == "cuda" and v in WAN_GPU_PAPER:
        return WAN_GPU_PAPER[v], "the paper's training time on its GPU; not measured on this machine yet"
    return None


def estimate(costs: Costs, profile, kind: str, params: dict, steps: int | None = None) -> Estimate:
    """The time a job will take before it starts: `steps` (default: all of the job's) at the per-step cost
    measured here, or a reference one, plus the overhead."""
    steps = job_steps(kind, params) if steps is None else steps
    if steps is None:
        return Estimate(None, "no step count")
    m = costs.get(cost_key(profile, kind, params))
    unit = UNITS.get(kind, "step")
    if m:
        n = m["jobs"]
        basis = f"measured on this machine: {m['per_step']:.2g} s/{unit} in {n} earlier job{'s' * (n > 1)}"
        per_step, overhead = m["per_step"], m["overhead"]
    else:
        ref = reference(profile, kind, params)
        if ref is None:
            return Estimate(None, "nothing measured yet for these settings on this machine", steps=steps)
        (per_step, overhead), basis = ref
        basis = f"{per_step:.2g} s/{unit}: {basis}"
    return Estimate(overhead + steps * per_step, basis, per_step, overhead, steps)


def checkpoint_every(est: Estimate, steps: int, default: int) -> int:
    """Steps between checkpoints: as many as take CHECKPOINT_SECONDS at the estimated step cost, and at most a
    quarter of the run (so a short run can be resumed too); the trainer's default when the cost is unknown."""
    quarter = max(1, -(-steps // 4))
    if est.per_step:
        return max(1, min(quarter, int(CHECKPOINT_SECONDS // est.per_step)))
    return max(1, min(default, quarter))


# -------------------------------------------------------------------------------------- from finished jobs
def call_records(records: list[dict]) -> list[dict]:
    """The records of the newest training call in a log.jsonl: 'seconds' restarts at every (resumed) call."""
    tail: list[dict] = []
    for r in records:
        if tail and r.get("seconds", 0) < tail[-1].get("seconds", 0):
            tail = []
        tail.append(r)
    return tail


def measure(job: dict) -> tuple[float, float] | None:
    """(per_step, overhead) seconds that a finished job took, or None when it cannot tell."""
    wall = (job.get("finished") or 0) - (job.get("started") or 0)
    if job.get("status") != "done" or wall <= 0:
        return None
    p = job["params"]
    if job["kind"] in ("train_subject", "train_motion"):
        from smrabooth.train.state import read_log

        calls = call_records(read_log(Path(p["out"]) / "log.jsonl"))
        if len(calls) < 2:
            return None
        # the first step of a call warms up (allocations, caches): the cost of a step comes from the others
        per_step = (calls[-1]["seconds"] - calls[0]["seconds"]) / (calls[-1]["step"] - calls[0]["step"])
        return per_step, max(0.0, wall - per_step * len(calls))
    if job["kind"] in UNITS:  # no step is timed apart: the whole job, per step
        steps = job_steps(job["kind"], p)
        return (wall / steps, 0.0) if steps else None
    if job["kind"] == "generate":
        r = job.get("result") or {}
        videos = [k for k in ("result", "baseline") if r.get(f"{k}_seconds")]
        steps = p["config"]["steps"] * len(videos)
        if not steps:
            return None
        seconds = sum(r[f"{k}_seconds"] for k in videos)
        return seconds / steps, max(0.0, wall - seconds)
    return None


def record_job(costs: Costs, profile, job: dict) -> None:
    m = measure(job)
    if m is not None:
        costs.record(cost_key(profile, job["kind"], job["params"]), *m)


# ----------------------------------------------------------------------------------------------- running
def time_left(costs: Costs, profile, job: dict, progress: dict) -> Estimate:
    """A queued or running job's time left: from its own steps once some have run, else the estimate."""
    kind, p = job["kind"], job["params"]
    steps = job_steps(kind, p)
    if job["status"] == "queued":
        return estimate(costs, profile, kind, p)
    if kind in ("train_subject", "train_motion"):
        from smrabooth.train.state import read_log

        calls = call_records(read_log(Path(p["out"]) / "log.jsonl"))
        done = calls[-1]["step"] if calls else 0
        if len(calls) >= 3:
            rate = (calls[-1]["seconds"] - calls[0]["seconds"]) / (calls[-1]["step"] - calls[0]["step"])
            return Estimate((steps - done) * rate, f"measured in this run: {rate:.2g} s/step", rate, 0.0, steps - done)
        est = estimate(costs, profile, kind, p, steps - done)
    elif kind == "generate" and progress.get("step"):
        done, first = progress["step"], progress.get("first_step_time")
        if done >= 3 and first:
            rate = (progress["time"] - first) / (done - 1)
            return Estimate((steps - done) * rate, f"measured in this job: {rate:.2g} s/step", rate, 0.0, steps - done)
        est = estimate(costs, profile, kind, p, steps - done)
    else:
        est = estimate(costs, profile, kind, p)
    if est.known:  # what has passed since the start is no longer ahead
        est.seconds = max(0.0, est.seconds - (time.time() - (job.get("started") or time.time())))
    return est
