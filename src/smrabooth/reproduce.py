"""The paper's whole experiment as one resumable command (`smrabooth reproduce`, docs/reproduce.md).

Given a dataset root, a model, the methods to compare and the seeds, `plan` lists every job:

    subject   one subject LoRA per subject and LoRA variant the methods use  (train-subject)
    motion    one motion LoRA per motion and LoRA variant                     (train-motion)
    generate  one video per method, test prompt and seed                     (generate)
    evaluate  the metrics of one video                                        (evaluate)

and `run` runs the jobs that are not done yet, stage by stage (training, generation, evaluation), then
writes Table 1 and the ablation table. Each job's settings go through the real command-line parser of
its command (`--subject-args "--steps 300"` is what `smrabooth train-subject --steps 300` would get),
so a job is exactly what the same command by hand would do.

Resuming: a finished job writes `<output>.done.json` holding a digest of everything that defines it
(settings, model files, data files, and the content digests of the outputs it read) and the SHA-256
of each output file. A job counts as done only when its marker's digest matches and its outputs still
hash to what the marker says; anything else runs again (a killed training job continues from its last
checkpoint). A retrained LoRA changes the digest of every video made with it, so those are remade.

Spreading: one worker per GPU, started by a process launcher (`torchrun --nproc-per-node N -m smrabooth
reproduce ...` or `accelerate launch`); each stage's pending jobs are split among the workers by
estimated cost (longest first, to the least loaded), and the workers wait for each other between
stages. `--shard i/n` takes a fixed share of every stage (for cluster array jobs); whatever a shard
cannot run yet because another shard has not made its inputs is reported, and a later call runs it.
The tables are written by whichever call finds every evaluation done (`--stage report` forces that).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SmraboothError
from .recipes import DEFAULT_RECIPE, get_recipe

STAGES = ("train", "generate", "evaluate")
STAGE_OF = {"subject": "train", "motion": "train", "generate": "generate", "evaluate": "evaluate"}


# ---------------------------------------------------------------- the cost of a job
@dataclass(frozen=True)
class JobCost:
    """Seconds of one job on one H200 at the Wan2.1-1.3B size: `fixed` + `per_unit` x units, scaled by
    the job's token count against the reference size (linear in tokens: an approximation)."""

    per_unit: float
    fixed: float
    unit: str
    reference_tokens: int  # tokens of the size `per_unit` was measured at
    measured: bool  # False: an estimate, to be replaced by benchmarks/bench_multigpu.py --costs
    source: str


# The one table of per-job costs (`--dry-run` and the ETA read it). Update it from
# `benchmarks/bench_multigpu.py --costs` (benchmarks/README.md).
JOB_COSTS: dict[str, JobCost] = {
    "subject": JobCost(0.506, 60.0, "training step", 1024, True,
                       "benchmarks/README.md: paper-recipe subject step (gradient checkpointing), 512x512, H200 "
                       "(official: 0.79 s at batch 2); fixed = model load + caching, estimated"),
    "motion": JobCost(1.73, 90.0, "training step", 11700, True,
                      "benchmarks/README.md: paper-recipe MoRA motion step, 49x576x320, H200 (official: 3.67 s "
                      "a step of batch 2, measured with fp32 LoRAs); fixed estimated"),
    "motion_no_mora": JobCost(0.69, 60.0, "training step", 11700, True,
                              "benchmarks/README.md: --no-mora motion step, 49x576x320, H200; fixed estimated"),
    "generate": JobCost(0.59, 20.0, "denoising step (with CFG)", 20280, False,
                        "benchmarks/README.md: merged LoRAs, 49x832x480, H200 (0.48 s with --compile); fixed "
                        "(load, prompt, decode) estimated"),
    "evaluate": JobCost(0.0, 20.0, "video", 1, False, "estimate: nine metrics on one 49-frame video"),
}


def training_tokens(kind: str, args) -> int:
    if kind == "subject":
        return (args.resolution // 16) ** 2
    return ((args.frames - 1) // 4 + 1) * (args.height // 16) * (args.width // 16)


def job_seconds(cost_key: str, units: float, tokens: int) -> float:
    c = JOB_COSTS[cost_key]
    return c.fixed + c.per_unit * units * tokens / c.reference_tokens


# ---------------------------------------------------------------- methods
@dataclass(frozen=True)
class Backbone:
    """The commands that train a backbone's LoRAs, and the generate flags that select it. A U-Net row is a
    Method with backbone="unet" once a `Backbone` entry for it exists."""

    subject_command: str = "train-subject"
    motion_command: str = "train-motion"
    generate_args: tuple[str, ...] = ()


BACKBONES: dict[str, Backbone] = {"dit": Backbone()}

# LoRA variants: the trainer flags that make them
SUBJECT_VARIANTS = {"sura": (), "plain": ("--no-sura",)}
MOTION_VARIANTS = {"mora": (), "plain": ("--no-mora",)}


@dataclass(frozen=True)
class Method:
    """One row of the tables: which LoRAs (None: none), how they are combined, and which tables show it."""

    subject: str | None
    motion: str | None
    injection: str = "sparse"
    tables: tuple[str, ...] = ("table1",)
    backbone: str = "dit"
    label: str = ""


METHODS: dict[str, Method] = {
    "wan": Method(None, None, tables=("table1",), label="Wan2.1 (no LoRA)"),
    # the naive combination: LoRAs trained without SuRA and MoRA, both on every layer at every step
    "wan_loras": Method("plain", "plain", injection="dense", tables=("table1",), label="Wan2.1 + LoRAs (dense)"),
    "smrabooth": Method("sura", "mora", tables=("table1", "ablation"), label="SMRABooth"),
    "no_sura": Method("plain", "mora", tables=("ablation",), label="w/o SuRA"),
    "no_mora": Method("sura", "plain", tables=("ablation",), label="w/o MoRA"),
}
TABLES = {"table1": "Table 1: methods", "ablation": "Ablation"}


# ---------------------------------------------------------------- settings
@dataclass
class ReproduceConfig:
    data: str
    model: str
    out: str
    methods: tuple[str, ...] = ("wan", "wan_loras", "smrabooth", "no_sura", "no_mora")
    seeds: tuple[int, ...] = (0,)
    recipe: str | None = None  # forwarded as --recipe to the trainers and generate when they have it
    prompts: str | None = None  # JSON list of {subject, motion, prompt} (`smrabooth prompts`); None: as it builds
    per_pair: int = 1
    backgrounds: str | None = None
    exclude: str | None = None
    subject_args: str = ""
    motion_args: str = ""
    generate_args: str = ""
    evaluate_args: str = ""
    offline: bool = False


@dataclass
class Job:
    kind: str  # subject | motion | generate | evaluate
    name: str  # its output, relative to the output folder
    spec: dict  # what defines it (hashed into the digest), JSON-able
    needs: tuple[str, ...] = ()
    seconds: float = 0.0  # estimated
    extra: dict = field(default_factory=dict)  # how to run it (not part of the digest)

    @property
    def stage(self) -> str:
        return STAGE_OF[self.kind]


# ---------------------------------------------------------------- digests
def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_digest(folder) -> str:
    """Content digest of every file under a (small) data folder."""
    folder = Path(folder)
    return _sha([(str(p.relative_to(folder)), file_sha(p)) for p in sorted(folder.rglob("*")) if p.is_file()])


def files_outside(kind: str, folder) -> list[Path]:
    """The files a training job reads (images, masks, clips) that do not lie in its data folder, resolved."""
    from .data.folders import read_motion_folder, read_subject_folder
    from .readers import is_inside

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
    return _sha([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


# ---------------------------------------------------------------- the plan
def _parse(argv: list[str]):
    """argv through the real `smrabooth` parser; a bad flag is one line naming the stage's flags."""
    import contextlib
    import io

    from .cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit:
        last = err.getvalue().strip().splitlines()[-1:] or ["invalid arguments"]
        raise SmraboothError(f"{argv[0]} {shlex.join(argv[1:])}: {last[0]}") from None


def _accepts(command: str, flag: str) -> bool:
    from .cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return flag in sub._option_string_actions


def _split(text: str, flag: str) -> list[str]:
    try:
        return shlex.split(text or "")
    except ValueError as e:
        raise SmraboothError(f"{flag} {text!r} is not a valid argument string ({e})") from None


def read_cases(cfg: ReproduceConfig) -> tuple[dict, dict, list[dict]]:
    """(subject folders, motion folders, test prompts [{subject, motion, prompt}])."""
    from .data.folders import find_motion_folders, find_subject_folders
    from .data.prompts import (
        build_test_prompts,
        collect_motions,
        collect_shipped_prompts,
        collect_subjects,
        load_backgrounds,
        load_exclusions,
    )

    if not Path(cfg.data).is_dir():
        raise SmraboothError(f"--data {cfg.data} does not exist")
    subjects, motions = find_subject_folders(cfg.data), find_motion_folders(cfg.data)
    if cfg.prompts:
        path = Path(cfg.prompts)
        if not path.is_file():
            raise SmraboothError(f"--prompts {path} does not exist")
        from .readers import read_json

        prompts = read_json(path, list, "--prompts")
        if not all(isinstance(p, dict) and {"subject", "motion", "prompt"} <= set(p)
                   and all(isinstance(p[k], str) for k in ("subject", "motion", "prompt")) for p in prompts):
            raise SmraboothError(f"--prompts {path} must be a JSON list of {{subject, motion, prompt}} (as "
                                 "`smrabooth prompts` writes)")
        for p in prompts:
            if p["subject"] not in subjects or p["motion"] not in motions:
                raise SmraboothError(f"--prompts {path}: {p['subject']}/{p['motion']} is not a subject/motion "
                                     f"folder of {cfg.data}")
    else:
        prompts = build_test_prompts(collect_subjects([cfg.data]), collect_motions([cfg.data]),
                                     load_backgrounds(cfg.backgrounds), cfg.per_pair, load_exclusions(cfg.exclude),
                                     collect_shipped_prompts([cfg.data]))  # the dataset's own prompts win
    return subjects, motions, prompts


def plan(cfg: ReproduceConfig) -> list[Job]:
    """Every job of the experiment, in stage order; checks every setting before anything loads."""
    from .cli.evaluate import settings_from_args
    from .cli.generate import config_from_args
    from .config import to_dict
    from .data.folders import read_motion_folder, read_subject_folder

    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown or not cfg.methods:
        raise SmraboothError(f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from "
                             f"{', '.join(METHODS)}")
    for m in cfg.methods:
        if METHODS[m].backbone not in BACKBONES:
            raise SmraboothError(f"method {m} needs the {METHODS[m].backbone} backbone, which this version lacks")
    subjects, motions, prompts = read_cases(cfg)
    stamp = model_stamp(cfg.model)
    common = ["--model", cfg.model] + (["--offline"] if cfg.offline else [])
    recipe = lambda cmd: ["--recipe", cfg.recipe] if cfg.recipe and _accepts(cmd, "--recipe") else []
    if cfg.recipe and not _accepts("train-subject", "--recipe"):
        raise SmraboothError(f"--recipe {cfg.recipe}: this version's trainers have no recipes; leave it out")
    used = {(prompt["subject"], prompt["motion"]) for prompt in prompts}
    jobs: list[Job] = []
    lora_job: dict[tuple[str, str, str, str], str] = {}  # (backbone, kind, name, variant) -> job name

    def training_job(backbone: str, kind: str, name: str, variant: str) -> str:
        key = (backbone, kind, name, variant)
        if key in lora_job:
            return lora_job[key]
        bb = BACKBONES[backbone]
        command = bb.subject_command if kind == "subject" else bb.motion_command
        flags = (SUBJECT_VARIANTS if kind == "subject" else MOTION_VARIANTS)[variant]
        folder = (subjects if kind == "subject" else motions)[name]
        user = _split(cfg.subject_args if kind == "subject" else cfg.motion_args, f"--{kind}-args")
        argv = [*common, "--data", str(folder), *recipe(command), *flags, *user]
        args = _parse([command, *argv, "--out", "x"])
        cost_key = kind if kind == "subject" or not getattr(args, "no_mora", False) else "motion_no_mora"
        job_name = f"loras/{backbone}/{kind}/{name}-{variant}"
        final = "subject_lora.safetensors" if kind == "subject" else "motion_lora.safetensors"
        spec = {"command": command, "argv": argv, "model": stamp, "data": folder_digest(folder)}
        outside = files_outside(kind, folder)
        if outside:  # the authors' layout may name files in the folder above: their contents count too
            spec["outside"] = _sha([(str(p), file_sha(p)) for p in outside])
        jobs.append(Job(kind, job_name, spec,
                        seconds=job_seconds(cost_key, args.steps, training_tokens(kind, args)),
                        extra={"final": final}))
        lora_job[key] = job_name
        return job_name

    for m in cfg.methods:  # LoRAs first: the training stage
        method = METHODS[m]
        for s, mo in sorted(used):
            if method.subject:
                training_job(method.backbone, "subject", s, method.subject)
            if method.motion:
                training_job(method.backbone, "motion", mo, method.motion)

    gen_user = _split(cfg.generate_args, "--generate-args")
    # every method, LoRAs or not, samples with the preset of the training recipe (--recipe, else the trainers'
    # default), unless --generate-args picks one
    gen_defaults = [] if "--preset" in gen_user else ["--preset", get_recipe(cfg.recipe or DEFAULT_RECIPE).name]
    eval_user = _split(cfg.evaluate_args, "--evaluate-args")
    eval_args = _parse(["evaluate", "--videos", "x", "--out", "x", *eval_user])
    metrics = [x.strip() for x in eval_args.metrics.split(",") if x.strip()]
    eval_settings = settings_from_args(eval_args).header()
    subject_images = {s: [str(it.image_path) for it in read_subject_folder(f, require_masks=False, check_files=False)]
                      for s, f in subjects.items()}
    reference = {mo: str(read_motion_folder(f)[0].video_path) for mo, f in motions.items()}
    digests: dict[str, str] = {}
    fd = lambda p: digests.setdefault(p, file_sha(p))
    evals = []
    for m in cfg.methods:
        method = METHODS[m]
        for k, prompt in enumerate(prompts):
            s, mo = prompt["subject"], prompt["motion"]
            needs = {}
            if method.subject:
                needs["subject"] = training_job(method.backbone, "subject", s, method.subject)
            if method.motion:
                needs["motion"] = training_job(method.backbone, "motion", mo, method.motion)
            for seed in cfg.seeds:
                case = f"{k:03d}-{s}-{mo}-s{seed}"
                argv = [*common, "--prompt", prompt["prompt"], "--seed", str(seed), *gen_defaults,
                        *BACKBONES[method.backbone].generate_args, *gen_user, "--injection", method.injection]
                args = _parse(["generate", *argv, "--out", "x.mp4"])
                gcfg = config_from_args(args)
                video = f"videos/{m}/{case}.mp4"
                jobs.append(Job("generate", video, {"method": m, "argv": argv, "config": to_dict(gcfg), "model": stamp,
                                                    "loras": sorted(needs)},
                                needs=tuple(needs.values()),
                                seconds=job_seconds("generate", gcfg.steps * (2 if gcfg.guidance > 1 else 1) / 2,
                                                    ((gcfg.frames - 1) // 4 + 1) * (gcfg.height // 16) * (gcfg.width // 16)),
                                extra={"loras": needs, "fps": gcfg.fps}))
                evals.append(Job("evaluate", f"scores/{m}/{case}.json",
                                 {"metrics": metrics, "settings": eval_settings, "prompt": prompt["prompt"],
                                  "subject_images": [fd(p) for p in subject_images[s]],
                                  "reference_video": fd(reference[mo])},
                                 needs=(video,), seconds=job_seconds("evaluate", 1, 1),
                                 extra={"method": m, "video": video, "prompt": prompt["prompt"],
                                        "subject_images": subject_images[s], "reference_video": reference[mo],
                                        "eval_argv": eval_user}))
    return jobs + evals


def save_plan(jobs: list[Job], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([{"kind": j.kind, "name": j.name, "needs": list(j.needs),
                                "estimated_seconds": round(j.seconds, 1)} for j in jobs], indent=1) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- done markers
def marker_path(out: Path, job: Job) -> Path:
    p = out / job.name
    return p.with_name(p.name + ".done.json")


def outputs_of(out: Path, job: Job) -> list[Path]:
    if job.kind in ("subject", "motion"):
        return [out / job.name / job.extra["final"]]
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
    return _sha({"kind": job.kind, "spec": job.spec, "inputs": {n: done[n]["outputs"] for n in job.needs}})


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


# ---------------------------------------------------------------- splitting work
def split_by_cost(jobs: list[Job], bins: int) -> list[list[Job]]:
    """Longest job first, to the least loaded bin (ties: the lowest bin): the same answer in every process."""
    loads, out = [0.0] * bins, [[] for _ in range(bins)]
    for job in sorted(jobs, key=lambda j: (-j.seconds, j.name)):
        i = min(range(bins), key=lambda b: (loads[b], b))
        loads[i] += job.seconds
        out[i].append(job)
    return out


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
        assert n >= 1 and 0 <= i < n
    except (ValueError, AssertionError):
        raise SmraboothError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4") from None
    return i, n


def shard_jobs(jobs: list[Job], shard: tuple[int, int]) -> list[Job]:
    """A fixed share of every stage (by estimated cost over ALL its jobs, done or not), so every shard agrees."""
    i, n = shard
    mine = []
    for stage in STAGES:
        mine += split_by_cost([j for j in jobs if j.stage == stage], n)[i]
    keep = {j.name for j in mine}
    return [j for j in jobs if j.name in keep]


def makespan(jobs: list[Job], workers: int) -> float:
    """Estimated wall seconds: stages run one after the other, each split by cost over the workers."""
    return sum(max([sum(j.seconds for j in b) for b in split_by_cost([j for j in jobs if j.stage == s], workers)]
                   or [0.0]) for s in STAGES)


def format_seconds(s: float) -> str:
    s = round(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def dry_run_text(out: Path, jobs: list[Job], gpus: int) -> str:
    done, _ = scan(out, jobs)
    lines = [f"{'stage':<9} {'kind':<9} {'status':<6} {'est':>9}  job"]
    for j in jobs:
        lines.append(f"{j.stage:<9} {j.kind:<9} {'done' if j.name in done else 'todo':<6} "
                     f"{format_seconds(j.seconds):>9}  {j.name}")
    todo = [j for j in jobs if j.name not in done]
    lines.append("")
    for kind in ("subject", "motion", "generate", "evaluate"):
        ks = [j for j in jobs if j.kind == kind]
        if ks:
            lines.append(f"{kind:<9} {len(ks):>5} jobs, {sum(j.name not in done for j in ks):>5} to do, "
                         f"{sum(j.seconds for j in ks if j.name not in done) / 3600:8.2f} GPU-hours to do")
    lines.append(f"total     {len(jobs):>5} jobs, {len(todo):>5} to do, {sum(j.seconds for j in todo) / 3600:8.2f} "
                 f"GPU-hours to do ({sum(j.seconds for j in jobs) / 3600:.2f} for the whole plan)")
    lines.append(f"wall time to do on {gpus} GPU(s): {format_seconds(makespan(todo, gpus))} (stages in sequence)")
    lines.append("costs: " + "; ".join(f"{k} {c.fixed:g} s + {c.per_unit:g} s/{c.unit} "
                                       f"({'measured' if c.measured else 'ESTIMATE'})" for k, c in JOB_COSTS.items()))
    return "\n".join(lines)


# ---------------------------------------------------------------- workers
@dataclass
class Worker:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Worker:
        """The process launcher's (torchrun / accelerate launch) rank and world size; one worker without one."""
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))

    def start(self) -> None:
        if self.world > 1:
            import datetime

            import torch.distributed as dist

            if not dist.is_initialized():  # gloo: only barriers pass between workers; stages can take days
                dist.init_process_group("gloo", timeout=datetime.timedelta(days=30))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def stop(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def device_args(self) -> list[str]:
        import torch

        return ["--device", f"cuda:{self.local_rank}"] if torch.cuda.is_available() and self.world > 1 else []


class Runner:
    """Runs jobs in this process, keeping the generation pipeline and the metric models between jobs."""

    def __init__(self, cfg: ReproduceConfig, out: Path, worker: Worker, log=print):
        self.cfg, self.out, self.worker, self.log = cfg, out, worker, log
        self.pipe_key, self.pipe = None, None
        self.evaluators: dict[str, object] = {}

    def free(self) -> None:
        import gc

        import torch

        self.pipe_key, self.pipe = None, None
        self.evaluators.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def run(self, job: Job, digest: str, done: dict[str, dict]) -> None:
        getattr(self, f"run_{'training' if job.kind in ('subject', 'motion') else job.kind}")(job, digest, done)

    def run_training(self, job: Job, digest: str, done) -> None:
        from .cli import main
        from .train.common import list_checkpoints
        from .train.distributed import single_process

        run_dir = self.out / job.name
        started = run_dir.with_name(run_dir.name + ".started.json")
        try:
            same = started.is_file() and json.loads(started.read_text()).get("digest") == digest
        except (OSError, ValueError, AttributeError, RecursionError):  # damaged: the job starts over
            same = False
        if same and list_checkpoints(run_dir):
            mode = ["--resume"]  # a killed run continues from its last checkpoint
        else:
            mode = ["--overwrite"] if run_dir.exists() else []
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        started.write_text(json.dumps({"digest": digest}) + "\n")
        argv = [job.spec["command"], *job.spec["argv"], *self.worker.device_args(), "--out", str(run_dir),
                "--quiet", *mode]
        self.free()
        with single_process():  # this worker's own job, not a share of a data-parallel one
            rc = main(argv)
        self.free()
        if rc:
            raise SmraboothError(f"job {job.name} failed ({shlex.join(argv)} exited with {rc}; its error is above)")

    def pipeline(self, args):
        from .cli.common import load_pipeline_from_args

        key = (args.model, args.dtype, args.vae_dtype, args.device)
        if self.pipe_key != key:
            self.free()
            self.pipe = load_pipeline_from_args(args)
            self.pipe.set_progress_bar_config(disable=True)
            self.pipe_key = key
        return self.pipe

    def run_generate(self, job: Job, digest: str, done) -> None:
        from .cli.generate import config_from_args
        from .lora.files import load_lora
        from .sampling import generate
        from .video import write_video

        path = self.out / job.name
        path.parent.mkdir(parents=True, exist_ok=True)
        args = _parse(["generate", *job.spec["argv"], *self.worker.device_args(), "--out", str(path)])
        config = config_from_args(args)
        loras = {k: self.out / n / ("subject_lora.safetensors" if k == "subject" else "motion_lora.safetensors")
                 for k, n in job.extra["loras"].items()}
        weights = {k: load_lora(p) for k, p in loras.items()}
        result = generate(self.pipeline(args), config, weights.get("subject"), weights.get("motion"), progress=False,
                          lora_paths={k: str(p) for k, p in loras.items()})
        tmp = path.with_name(f".{path.stem}.tmp.mp4")
        write_video(result.frames, tmp, fps=config.fps)
        os.replace(tmp, path)

    def run_evaluate(self, job: Job, digest: str, done) -> None:
        from .cli.evaluate import settings_from_args
        from .metrics.runner import EvalItem, Evaluator

        path = self.out / job.name
        path.parent.mkdir(parents=True, exist_ok=True)
        args = _parse(["evaluate", "--videos", str(self.out / job.extra["video"]), "--out", "x",
                       *job.extra["eval_argv"]])
        key = json.dumps(job.spec["settings"], sort_keys=True) + json.dumps(job.spec["metrics"])
        if key not in self.evaluators:
            self.free()
            self.evaluators[key] = Evaluator(settings_from_args(args), job.spec["metrics"],
                                             warn=lambda msg: self.log(f"warning: {msg}"))
        ev = self.evaluators[key]
        item = EvalItem(job.extra["method"], self.out / job.extra["video"], job.extra["prompt"],
                        [Path(p) for p in job.extra["subject_images"]], Path(job.extra["reference_video"]))
        row = ev.run([item])[0]
        row["video"] = job.extra["video"]
        row["skipped"] = dict(ev.skipped)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(row) + "\n")
        os.replace(tmp, path)


class Progress:
    """One line per finished job, with the ETA of the whole plan: the estimated seconds of every job not yet
    done (a marker on disk, whoever ran it), scaled by how this process's jobs compared with their estimates,
    over the workers."""

    def __init__(self, out: Path, jobs: list[Job], workers: int, log=print):
        self.out, self.jobs, self.workers, self.log = out, jobs, workers, log
        self.spent, self.estimated = 0.0, 0.0

    def finished(self, job: Job, seconds: float) -> None:
        self.spent += seconds
        self.estimated += job.seconds
        left = [j for j in self.jobs if not marker_path(self.out, j).is_file()]
        ratio = self.spent / self.estimated if self.estimated else 1.0
        eta = sum(j.seconds for j in left) * ratio / self.workers
        self.log(f"[{len(self.jobs) - len(left)}/{len(self.jobs)}] {job.kind} {job.name} in {seconds:.1f}s "
                 f"(estimated {job.seconds:.0f}s); plan ETA {format_seconds(eta)}")


def _print(line: str) -> None:
    print(line, flush=True)


def run(cfg: ReproduceConfig, stage: str = "all", shard: str | None = None, worker: Worker | None = None,
        log=_print) -> int:
    """Run the jobs of `stage` (or all) in this shard; write the tables when every evaluation is done.
    Returns 0, or 3 when some jobs wait on other shards' outputs."""
    out = Path(cfg.out)
    worker = worker or Worker.from_env()
    jobs = plan(cfg)
    mine = shard_jobs(jobs, parse_shard(shard))
    worker.start()
    if worker.rank == 0:
        save_plan(jobs, out / "plan.json")
    runner = Runner(cfg, out, worker, log)
    progress = Progress(out, mine, worker.world, log)
    blocked: list[str] = []
    try:
        for st in {"all": STAGES, "report": ()}.get(stage, (stage,)):
            done, digests = scan(out, jobs)
            todo = [j for j in mine if j.stage == st and j.name not in done]
            ready = [j for j in todo if j.name in digests]
            blocked += [j.name for j in todo if j.name not in digests]
            share = split_by_cost(ready, worker.world)[worker.rank]
            worker.barrier()  # every worker has read the state before any writes to it
            for job in share:
                t0 = time.time()
                runner.run(job, digests[job.name], done)
                seconds = time.time() - t0
                write_marker(out, job, digests[job.name], seconds)
                progress.finished(job, seconds)
            runner.free()
            worker.barrier()
        code = 0
        if worker.rank == 0:
            done, _ = scan(out, jobs)
            missing = [j for j in jobs if j.kind == "evaluate" and j.name not in done]
            if not missing:
                for path in write_tables(cfg, out, jobs):
                    log(f"wrote {path}")
            elif stage == "report":  # nothing to write the tables from: an error, not a silent success
                raise SmraboothError(f"--stage report: {len(missing)} of {sum(j.kind == 'evaluate' for j in jobs)} "
                                     f"evaluations are not done (e.g. {missing[0].name}); run the other stages (of "
                                     "every shard) first")
            elif blocked:
                log(f"{len(missing)} of {sum(j.kind == 'evaluate' for j in jobs)} evaluations are not done "
                    f"(e.g. {missing[0].name}): the tables are written once every shard has finished")
        if blocked:
            log(f"{len(blocked)} job(s) wait for other shards' outputs (e.g. {blocked[0]}): run this shard again "
                "once the earlier stages of every shard are done")
            code = 3
        return code
    finally:
        worker.stop()


# ---------------------------------------------------------------- the tables
def write_tables(cfg: ReproduceConfig, out: Path, jobs: list[Job]) -> list[Path]:
    """Table 1 and the ablation table from the per-video scores: markdown, CSV and the HTML report each."""
    from .metrics.report import format_table, write_report

    evals = [j for j in jobs if j.kind == "evaluate"]
    from .readers import read_json

    rows = [read_json(out / j.name, dict, "a score file") for j in evals]
    metrics = evals[0].spec["metrics"]
    written = []
    for table, title in TABLES.items():
        methods = [m for m in cfg.methods if table in METHODS[m].tables]
        if not methods:
            continue
        these = [r for r in rows if r["method"] in methods]
        skipped = {k: v for r in these for k, v in r.pop("skipped", {}).items()}
        header = {"title": title, "methods": {m: METHODS[m].label for m in methods}, "model": cfg.model,
                  "data": cfg.data, "seeds": list(cfg.seeds), "recipe": cfg.recipe, **evals[0].spec["settings"]}
        folder = out / "tables" / table
        res = write_report(folder, header, these, metrics, skipped)
        active = [c for c in metrics if c not in skipped]
        md = folder / "table.md"
        md.write_text(f"# {title}\n\n{format_table(res['summary'], active, markdown=True)}\n")
        written += [md, res["paths"]["table_csv"], res["paths"]["html"]]
    return written
