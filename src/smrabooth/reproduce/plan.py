"""Every job of the experiment, checked before anything loads, and how the jobs are shared among workers
(`--shard`, one worker per GPU) and estimated (`--dry-run`)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from ..backbones import backbone_for_model
from ..errors import SmraboothError
from ..recipes import DEFAULT_RECIPE, get_recipe
from ..train.memory import run_tokens  # Wan2.1's geometry, the size JOB_COSTS were measured at
from .digests import file_sha, files_outside, folder_digest, model_stamp, scan, sha_of
from .jobs import (
    BACKBONES,
    JOB_COSTS,
    METHODS,
    MOTION_VARIANTS,
    STAGES,
    SUBJECT_VARIANTS,
    Job,
    ReproduceConfig,
    job_seconds,
)


# ---------------------------------------------------------------- the plan
def parse_command(argv: list[str]):
    """argv through the real `smrabooth` parser; a bad flag is one line naming the stage's flags."""
    import contextlib
    import io

    from ..cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit:
        last = err.getvalue().strip().splitlines()[-1:] or ["invalid arguments"]
        raise SmraboothError(f"{argv[0]} {shlex.join(argv[1:])}: {last[0]}") from None


def _accepts(command: str, flag: str) -> bool:
    from ..cli import build_parser

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
    from ..data.folders import find_motion_folders, find_subject_folders
    from ..data.prompts import (
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
        from ..readers import read_json

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
    from ..cli.common import model_settings
    from ..cli.evaluate import settings_from_args
    from ..cli.generate import config_from_args
    from ..cli.train import resolve_train_config
    from ..config import to_dict
    from ..data.folders import read_motion_folder, read_subject_folder

    cfg = cfg.validate()
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
    model_backbone = backbone_for_model(cfg.model)  # its LoRA files: one per kind, or one per Wan2.2 A14B expert
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
        args = parse_command([command, *argv, "--out", "x"])
        settings = resolve_train_config(kind, args)  # what the command runs with: recipe <- flags
        settings.out = None  # the runner's folder for the job
        cost_key = kind if kind == "subject" or settings.use_mora else "motion_no_mora"
        job_name = f"loras/{backbone}/{kind}/{name}-{variant}"
        finals = list(model_backbone.final_names(kind, settings))
        # the resolved settings are in the digest: a default that changes (a recipe's) retrains the LoRA
        spec = {"command": command, "argv": argv, "config": to_dict(settings), "model": stamp,
                "data": folder_digest(folder)}
        outside = files_outside(kind, folder)
        if outside:  # the authors' layout may name files in the folder above: their contents count too
            spec["outside"] = sha_of([(str(p), file_sha(p)) for p in outside])
        jobs.append(Job(kind, job_name, spec,
                        seconds=job_seconds(cost_key, settings.steps, run_tokens(kind, settings)),
                        extra={"final": finals[0], "finals": finals, "config": settings,
                               "model": model_settings(args)}))
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
    eval_args = parse_command(["evaluate", "--videos", "x", "--out", "x", *eval_user])
    metrics = [x.strip() for x in eval_args.metrics.split(",") if x.strip()]
    eval_resolved = settings_from_args(eval_args)
    eval_settings = eval_resolved.header()
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
                args = parse_command(["generate", *argv, "--out", "x.mp4"])
                gcfg = config_from_args(args)
                video = f"videos/{m}/{case}.mp4"
                jobs.append(Job("generate", video, {"method": m, "argv": argv, "config": to_dict(gcfg), "model": stamp,
                                                    "loras": sorted(needs)},
                                needs=tuple(needs.values()),
                                seconds=job_seconds("generate", gcfg.steps * (2 if gcfg.guidance > 1 else 1) / 2,
                                                    run_tokens("motion", gcfg)),
                                extra={"loras": needs, "fps": gcfg.fps, "config": gcfg,
                                       "model": model_settings(args)}))
                evals.append(Job("evaluate", f"scores/{m}/{case}.json",
                                 {"metrics": metrics, "settings": eval_settings, "prompt": prompt["prompt"],
                                  "subject_images": [fd(p) for p in subject_images[s]],
                                  "reference_video": fd(reference[mo])},
                                 needs=(video,), seconds=job_seconds("evaluate", 1, 1),
                                 extra={"method": m, "video": video, "prompt": prompt["prompt"],
                                        "subject_images": subject_images[s], "reference_video": reference[mo],
                                        "settings": eval_resolved}))
    return jobs + evals


def save_plan(jobs: list[Job], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([{"kind": j.kind, "name": j.name, "needs": list(j.needs),
                                "estimated_seconds": round(j.seconds, 1)} for j in jobs], indent=1) + "\n")
    os.replace(tmp, path)

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
