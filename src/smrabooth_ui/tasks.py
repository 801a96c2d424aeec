"""What each job does, inside the worker process: the same Python API the CLI calls.

    prepare_subject smrabooth.data.prepare_subject.prepare_subject with the mask tool (GroundingDINO + SAM)
                   (smrabooth prepare-subject)
    train_subject  smrabooth.train.subject.train_subject   (smrabooth train-subject)
    train_motion   smrabooth.train.motion.train_motion     (smrabooth train-motion), after drawing the
                   reference clip's SEA-RAFT flow (reference_flow.mp4 in the run folder)
    generate       smrabooth.sampling.generate             (smrabooth generate), with the LoRAs and, when
                   asked, again without them on the same seed (the baseline)
    evaluate       smrabooth.metrics.runner.Evaluator      (smrabooth evaluate)

The model is loaded for each job (a trainer changes the pipeline it is given); every path in a job's
params must lie in the work folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from smrabooth.errors import SmraboothError
from smrabooth.recipes import DEFAULT_RECIPE

from .jobs import write_json
from .profile import ModelProfile
from .workdir import Workdir


def report_progress(workdir: str, job_id: str, **fields) -> None:
    write_json(Path(workdir) / "jobs" / f"{job_id}.progress", {**fields, "time": time.time()})


class StepClock:
    """A generation's progress file: the step, and when the first step ended (the ETA's rate is measured
    from there, past the first step's warm-up)."""

    def __init__(self, workdir: str, job_id: str, steps: int):
        self.workdir, self.job_id, self.steps, self.first = workdir, job_id, steps, None

    def step(self, done: int, **fields) -> None:
        now = time.time()
        self.first = self.first or now
        report_progress(self.workdir, self.job_id, step=done, steps=self.steps, first_step_time=self.first, **fields)


def run_job(job: dict, profile: dict, workdir: str) -> dict:
    tasks = {"prepare_subject": prepare_subject_task, "train_subject": train_subject_task,
             "train_motion": train_motion_task, "generate": generate_task, "evaluate": evaluate_task}
    if job["kind"] not in tasks:
        raise SmraboothError(f"unknown job kind {job['kind']!r}")
    return tasks[job["kind"]](job, ModelProfile.from_dict(profile), Workdir(workdir))


def load_pipe(profile: ModelProfile):
    from smrabooth.backbones import backbone_for_model

    return backbone_for_model(profile.model).load(profile.model, dtype="auto", vae_dtype="fp32", device=profile.device)


def _local(path: str) -> bool | None:
    return True if Path(path).exists() else None


# ---------------------------------------------------------------------------------------------- mask tool
def prepare_subject_task(job: dict, profile: ModelProfile, wd: Workdir) -> dict:
    """The subject's photos with masks from the mask tool: GroundingDINO finds the subject, SAM cuts it out
    (as `smrabooth prepare-subject --segmenter grounding-sam`). A photo where nothing is found is left out."""
    from smrabooth.data.masks import MaskSettings
    from smrabooth.data.prepare_subject import prepare_subject
    from smrabooth.data.segment import GroundingDinoDetector, SamSegmenter, TextPromptedSegmenter

    p = job["params"]
    uploads, out = wd.inside(p["uploads"]), wd.inside(p["out"])
    detector = GroundingDinoDetector.from_pretrained(profile.detector, None, device=profile.device)
    sam = SamSegmenter.from_pretrained(profile.sam, None, device=profile.device)
    results = prepare_subject([uploads], p.get("label") or p["name"], out, object_prompt=p.get("object_prompt") or None,
                              segmenter=TextPromptedSegmenter(detector, sam, MaskSettings()), overwrite=True,
                              log=lambda msg: print(msg, flush=True), adopt_unmarked=True)
    left_out = {r.source.name: r.note for r in results if r.file_name is None}
    return {"data": str(out), "contact_sheet": str(out / "contact_sheet.png"),
            "images": len(results) - len(left_out), "left_out": left_out}


# ------------------------------------------------------------------------------------------------ training
def train_subject_task(job: dict, profile: ModelProfile, wd: Workdir) -> dict:
    import torch

    from smrabooth.models.dinov2 import load_dinov2
    from smrabooth.train.subject import train_subject

    p = job["params"]
    cfg = profile.train_config(
        "subject", p.get("recipe") or DEFAULT_RECIPE, model=profile.model, data=str(wd.inside(p["data"])),
        out=str(wd.inside(p["out"])), steps=int(p["steps"]), rank=int(p["rank"]), alpha=float(p["rank"]),
        lr=float(p["lr"]), use_sura=bool(p["use_sura"]), use_mask=bool(p["use_mask"]), seed=int(p.get("seed", 0)),
        gradient_checkpointing=profile.device != "cpu", checkpoint_every=int(p["checkpoint_every"]),
        validate_every=int(p.get("validate_every") or 0), validation_prompt=p.get("validation_prompt") or None,
        save_dtype="fp32" if profile.sprites else "bf16").validate()
    pipe = load_pipe(profile)
    encoder = None
    if cfg.use_sura:
        def encoder():  # loaded only when some image's features are not cached yet
            dtype = torch.bfloat16 if pipe._execution_device.type == "cuda" else torch.float32
            return load_dinov2(cfg.encoder, device=pipe._execution_device, dtype=dtype,
                               local_files_only=_local(cfg.encoder))
    final = train_subject(cfg, pipe, encoder, model_id=profile.model, resume=bool(p.get("resume")), progress=False)
    return {"lora": str(final), "run": cfg.out}


def flow_to_rgb(flow: np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """(2, H, W) flow -> (H, W, 3) uint8 in the usual colour wheel: hue is the direction, saturation the
    speed relative to `max_norm` (default: this flow's largest), white where nothing moves."""
    u, v = flow[0], flow[1]
    norm = np.hypot(u, v)
    scale = max_norm if max_norm else max(float(norm.max()), 1e-6)
    hue = (np.arctan2(-v, -u) / np.pi + 1) / 2  # 0..1 around the wheel
    sat = np.clip(norm / scale, 0, 1)
    k = (hue[..., None] * 6 + np.array([5, 3, 1])) % 6  # HSV -> RGB with value 1
    rgb = 1 - sat[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)
    return (rgb * 255).round().astype(np.uint8)


def write_flow_video(frames, flow_model, path: Path, fps: float, iters: int | None = None) -> Path:
    """The reference clip's SEA-RAFT flows (the ones MoRA aligns to) as a colour video beside the clip."""
    import torch

    from smrabooth.align.mora import reference_flows
    from smrabooth.models.searaft import compute_flow
    from smrabooth.video import write_video

    device = next(flow_model.parameters()).device
    with torch.no_grad():
        flows = reference_flows(frames.to(device), lambda a, b: compute_flow(flow_model, a, b, iters=iters))
    flows = flows.float().cpu().numpy()
    top = float(np.hypot(flows[:, 0], flows[:, 1]).max()) or 1.0
    clip = (frames[1:].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    video = np.concatenate([clip, np.stack([flow_to_rgb(f, top) for f in flows])], axis=2)
    return write_video(video, path, fps=fps)


def train_motion_task(job: dict, profile: ModelProfile, wd: Workdir) -> dict:
    from smrabooth.data.folders import read_motion_folder
    from smrabooth.data.motion import load_motion_frames
    from smrabooth.models.searaft import load_searaft
    from smrabooth.train.motion import train_motion

    p = job["params"]
    recipe = p.get("recipe") or DEFAULT_RECIPE
    stage = profile.train_config("motion", recipe)
    frames, fps = int(p.get("frames") or stage.frames), float(p.get("fps") or stage.fps)  # the clip's trim
    window = {}
    if profile.sprites:  # the MoRA window the lab fits to its short clips, and its split of a two-phase recipe
        from smrabooth.recipes import get_recipe

        from .profile import sprites_module

        size, drop, stride = sprites_module("experiment").mora_window(frames)
        window = {"window": size, "drop_frames": drop, "window_stride": stride}
        steps = int(p["steps"])
        if get_recipe(recipe).motion.spatial_steps:  # as the lab's motion_train_config: half spatial, half motion
            window.update(spatial_steps=steps // 2, temporal_steps=steps - steps // 2)
    cfg = profile.train_config(
        "motion", recipe, model=profile.model, data=str(wd.inside(p["data"])), out=str(wd.inside(p["out"])),
        steps=int(p["steps"]), rank=int(p["rank"]), alpha=float(p["rank"]), lr=float(p["lr"]), frames=frames, fps=fps,
        use_mora=bool(p["use_mora"]), seed=int(p.get("seed", 0)), gradient_checkpointing=profile.device != "cpu",
        checkpoint_every=int(p["checkpoint_every"]), validate_every=int(p.get("validate_every") or 0),
        validation_prompt=p.get("validation_prompt") or None, save_dtype="fp32" if profile.sprites else "bf16",
        **window).validate()
    items = read_motion_folder(cfg.data)  # a bad folder fails before any model loads
    frames = load_motion_frames(items[0].video_path, cfg.frames, cfg.fps, cfg.height, cfg.width, cfg.loop)
    pipe = load_pipe(profile)
    flow_model = load_searaft(cfg.flow_model, device=pipe._execution_device,
                              local_files_only=_local(cfg.flow_model))
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    flow_video = write_flow_video(frames, flow_model, Path(cfg.out).parent / f"{Path(cfg.out).name}.flow.mp4",
                                  fps=cfg.fps, iters=cfg.flow_iters)
    final = train_motion(cfg, pipe, flow_model if cfg.use_mora else None, model_id=profile.model,
                         flow_id=cfg.flow_model, resume=bool(p.get("resume")), progress=False)
    return {"lora": str(final), "run": cfg.out, "flow_video": str(flow_video)}


# ---------------------------------------------------------------------------------------------- generation
def generate_task(job: dict, profile: ModelProfile, wd: Workdir) -> dict:
    from smrabooth.lora.files import load_lora, with_expert_siblings
    from smrabooth.sampling import GenerateConfig, generate
    from smrabooth.video import write_video

    p = job["params"]
    config = GenerateConfig(**p["config"]).validate()
    out = wd.inside(p["out"])
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: str(wd.inside(p[f"{k}_lora"])) if p.get(f"{k}_lora") else None for k in ("subject", "motion")}
    # a run's file of one Wan2.2 A14B expert brings the other expert's file with it
    loras = {k: [load_lora(f) for f in with_expert_siblings(v)] if v else None for k, v in paths.items()}
    pipe = load_pipe(profile)
    renders = [("result", loras["subject"], loras["motion"])]
    if p.get("baseline") and any(loras.values()):
        renders.append(("baseline", None, None))
    clock = StepClock(str(wd.root), job["id"], config.steps * len(renders))
    written = {}
    for n, (name, subject, motion) in enumerate(renders):
        def on_step(i, scales, n=n, name=name):
            clock.step(n * config.steps + i + 1, video=name)

        start = time.time()
        result = generate(pipe, config, subject, motion, progress=False, on_step=on_step, lora_paths=paths)
        written[name] = str(write_video(result.frames, out / f"{name}.mp4", fps=config.fps))
        written[f"{name}_seconds"] = round(time.time() - start, 2)
        if name == "result":
            from PIL import Image

            Image.fromarray(result.frames[len(result.frames) // 2]).save(out / "thumbnail.png")
            s = result.schedule
            written["schedule"] = {"t_point": s.t_point, "subject_early": s.subject_early,
                                   "subject_late": s.subject_late, "motion": s.motion}
    if p.get("baseline") and not any(loras.values()):  # no LoRA: the result is the baseline, same seed
        import shutil

        shutil.copyfile(out / "result.mp4", out / "baseline.mp4")
        written["baseline"], written["baseline_is_result"] = str(out / "baseline.mp4"), True
    from dataclasses import asdict

    settings = {"model": profile.model, "config": asdict(config), "subject_lora": paths["subject"],
                "motion_lora": paths["motion"], "subject_data": p.get("subject_data"),
                "motion_data": p.get("motion_data"), **written}
    write_json(out / "settings.json", settings)
    return settings


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_task(job: dict, profile: ModelProfile, wd: Workdir) -> dict:
    from smrabooth.metrics.report import write_report
    from smrabooth.metrics.runner import LABELS, NEEDS, EvalItem, EvalSettings, Evaluator

    p = job["params"]
    items = [EvalItem(it["method"], wd.inside(it["video"]), it.get("prompt") or None,
                      [wd.inside(s) for s in it.get("subject_images") or []],
                      wd.inside(it["reference_video"]) if it.get("reference_video") else None) for it in p["items"]]
    skipped, metrics = {}, []
    for m in p["metrics"]:  # a metric whose input the videos lack is explained, not an error
        need = NEEDS.get(m)
        if need and not all(getattr(it, need[0]) for it in items):
            skipped[m] = f"needs the {need[0].replace('_', ' ')} of every chosen video (generate with a " + (
                "subject LoRA)" if need[0] == "subject_images" else "motion LoRA)" if need[0] == "reference_video"
                else "prompt)")
        else:
            metrics.append(m)
    if not metrics:
        raise SmraboothError("no metric could run: " + "; ".join(f"{LABELS[k]}: {v}" for k, v in skipped.items()))
    kw = {"dino_model": profile.eval_dino} if profile.eval_dino else {}
    settings = EvalSettings(device=profile.device, local_files_only=True if profile.sprites else None,
                            tracker=p.get("tracker") or "auto", searaft_model=profile.flow_model,
                            cotracker_checkpoint=profile.cotracker_checkpoint, cotracker_repo=profile.cotracker_repo,
                            aesthetic_head=profile.aesthetic_head, **kw)
    ev = Evaluator(settings, metrics, warn=lambda msg: print(f"warning: {msg}", flush=True))
    rows = ev.run(items)
    skipped.update(ev.skipped)
    if all(m in skipped for m in metrics):
        raise SmraboothError("no metric could run: " + "; ".join(f"{LABELS[k]}: {v}" for k, v in skipped.items()))
    header = settings.header()
    if "motion_fidelity" in metrics:
        header["tracker_used"] = ev.tracker_used
    out = wd.inside(p["out"])
    res = write_report(out, header, rows, list(p["metrics"]), skipped)
    (out / "skipped.json").write_text(json.dumps(skipped, indent=1) + "\n")
    return {"table": res["table"], "skipped": skipped, "report": str(res["paths"]["html"]), "out": str(out)}
