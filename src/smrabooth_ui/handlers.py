"""The pages' actions as plain functions of a `UiApp` and the values of the page's inputs.

They validate what the user gave (one clear SmraboothError line, before anything is written or
queued), call the same Python API as the CLI (data preparation runs here; training, generation and
evaluation are queued as jobs, tasks.py), and return plain values (paths, texts, tables) that app.py
puts on the page. Nothing here needs Gradio or a browser.
"""

from __future__ import annotations

import html
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from smrabooth.errors import SmraboothError
from smrabooth.recipes import DEFAULT_RECIPE, get_recipe
from smrabooth.validation import parse_number

from .jobs import COMMANDS, JobQueue, read_json
from .profile import Examples, ModelProfile, write_examples
from .workdir import Workdir, safe_file_name, safe_name, upload_path

MASK_SOURCES = ("uploaded masks", "mask tool (GroundingDINO + SAM)", "no masks")


class UiApp:
    """Everything a page needs: the work folder, the model profile, the job queue, the examples."""

    def __init__(self, workdir, profile: ModelProfile, queue: JobQueue | None = None, start_jobs: bool = True):
        self.wd = Workdir(workdir)
        self.profile = profile
        self.queue = queue or JobQueue(self.wd.root, profile.to_dict(), start=start_jobs)
        self.examples: Examples | None = write_examples(self.wd.root / "examples", profile)

    def close(self) -> None:
        self.queue.stop()


def fail(command: str, error: SmraboothError) -> str:
    """The line the CLI prints for the same error."""
    return f"smrabooth {command}: error: {error}"


# ------------------------------------------------------------------------------------------------ subject
def subject_photos(app: UiApp, name: str) -> list[str]:
    folder = app.wd.subject(name) / "uploads"
    return [str(p) for p in sorted(folder.iterdir())] if folder.is_dir() else []


def add_subject_photos(app: UiApp, name: str, photos, masks=None) -> list[str]:
    """Check every upload reads as an image, then copy photos (and masks) into the subject's folder."""
    from smrabooth.data.folders import IMAGE_EXTS, load_image

    folder = app.wd.subject(name)
    photos, masks = list(photos or []), list(masks or [])
    if not photos and not masks:
        raise SmraboothError("no photos given: choose image files to upload")
    for f in photos + masks:
        path = upload_path(f)
        if path.suffix.lower() not in IMAGE_EXTS:
            raise SmraboothError(f"{path.name} is not an image file ({', '.join(sorted(IMAGE_EXTS))})")
        load_image(path)  # a clear error for a file that does not decode
    app.wd.save_uploads(photos, folder / "uploads")
    app.wd.save_uploads(masks, folder / "masks")
    return subject_photos(app, name)


def remove_subject_photo(app: UiApp, name: str, file_name: str) -> list[str]:
    """Delete one uploaded photo and its mask (the prepared set is made again by prepare_subject_data)."""
    folder = app.wd.subject(name)
    target = app.wd.inside(folder / "uploads" / safe_file_name(Path(file_name).name))
    if not target.is_file():
        raise SmraboothError(f"subject {name} has no photo {Path(file_name).name}")
    target.unlink()
    for mask in (folder / "masks").glob(target.stem + ".*"):
        mask.unlink()
    return subject_photos(app, name)


def prepare_subject_data(app: UiApp, name: str, mask_source: str = MASK_SOURCES[0],
                         object_prompt: str | None = None) -> str:
    """smrabooth prepare-subject on the uploads: images/, masks/, metadata.csv, contact_sheet.png in data/.
    With uploaded masks or none it runs here; the mask tool loads two models, so it is queued as a job.
    Returns the status line."""
    folder = app.wd.subject(name)
    uploads = folder / "uploads"
    if not uploads.is_dir() or not any(uploads.iterdir()):
        raise SmraboothError(f"subject {safe_name(name)} has no photos: upload some first")
    if mask_source not in MASK_SOURCES:
        raise SmraboothError(f"mask source {mask_source!r}: choose one of {', '.join(MASK_SOURCES)}")
    if mask_source == MASK_SOURCES[1]:
        job = queue_mask_tool(app, name, object_prompt)
        return f"queued: {job['title']}; the contact sheet appears when it is done"
    masks_dir = None
    if mask_source == MASK_SOURCES[0]:
        if not (folder / "masks").is_dir() or not any((folder / "masks").iterdir()):
            raise SmraboothError("no masks uploaded: upload one mask per photo, named like it (dog1.jpg -> "
                                 "dog1.png), or choose the mask tool or no masks")
        masks_dir = folder / "masks"
    from smrabooth.data.prepare_subject import prepare_subject

    prepare_subject([uploads], safe_name(name), folder / "data", object_prompt=object_prompt or None,
                    masks_dir=masks_dir, overwrite=True, log=lambda m: None, adopt_unmarked=True)
    return f"prepared {len(subject_photos(app, name))} photo(s) of {safe_name(name)}: check the contact sheet"


def queue_mask_tool(app: UiApp, name: str, object_prompt: str | None = None) -> dict:
    """Queue the mask tool (GroundingDINO + SAM, tasks.prepare_subject_task) on the subject's uploads."""
    folder = app.wd.subject(name)
    what = (object_prompt or "").strip() or f"a {safe_name(name)}"
    _busy(app, "prepare_subject")
    params = {"name": safe_name(name), "uploads": str(folder / "uploads"), "out": str(folder / "data"),
              "object_prompt": what}
    return app.queue.submit("prepare_subject", f"masks of {safe_name(name)} by the mask tool ('{what}')", params)


def mask_tool_view(app: UiApp, name: str) -> str:
    """The mask tool's newest job on subject `name` as one line ('' when there is none): its state, or what it
    left out."""
    try:
        name = safe_name(name)
    except SmraboothError:
        return ""
    jobs = [j for j in app.queue.list("prepare_subject") if j["params"].get("name") == name]
    job = jobs[-1] if jobs else None
    if job is None:
        return ""
    line = job_status_line(app, job)
    left_out = (job.get("result") or {}).get("left_out") or {}
    if job["status"] == "done" and left_out:
        line += "; left out " + "; ".join(f"{k} ({v})" for k, v in left_out.items())
    return f"mask tool: {line}"


def use_example_subject(app: UiApp) -> tuple[str, Path]:
    """The sprite world's example subject, uploaded and prepared like a user's photos."""
    ex = need_examples(app)
    shutil.rmtree(app.wd.subject(ex.subject_name), ignore_errors=True)
    add_subject_photos(app, ex.subject_name, ex.subject_images, ex.subject_masks)
    prepare_subject_data(app, ex.subject_name, MASK_SOURCES[0])
    return ex.subject_name, app.wd.subject(ex.subject_name) / "data" / "contact_sheet.png"


def need_examples(app: UiApp) -> Examples:
    if app.examples is None:
        raise SmraboothError("the examples come with the SMRA-Sprites model (start `smrabooth ui` without --model)")
    return app.examples


def _unfinished_run(app: UiApp, kind: str, name: str) -> Path | None:
    """The newest run of `name` with a checkpoint and no final LoRA: what Resume continues."""
    from smrabooth.train.common import list_checkpoints

    runs = sorted(app.wd.runs(kind).glob(f"{safe_name(name)}-*"), key=lambda p: p.stat().st_mtime)
    for run in reversed(runs):
        if list_checkpoints(run) and not (run / f"{kind}_lora.safetensors").exists():
            return run
    return None


def _training_run(app: UiApp, kind: str, name: str, resume: bool) -> Path:
    if resume:
        run = _unfinished_run(app, kind, name)
        if run is None:
            raise SmraboothError(f"nothing to resume: no {kind} run of {safe_name(name)} stopped after a checkpoint; "
                                 "start a new training")
        return run
    return app.wd.new_folder(app.wd.runs(kind), name)


def _positive(value, what: str, cast=int):
    """A positive number typed into a form: the CLI's checks (inf, NaN, '²', 10^400 are one line)."""
    v = parse_number(what, value, integer=cast is int)
    if v <= 0:
        raise SmraboothError(f"{what} must be positive, got {value}")
    return v


def _busy(app: UiApp, kind: str) -> None:
    job = app.queue.latest(kind)
    if job and job["status"] in ("queued", "running"):
        raise SmraboothError(f"a {COMMANDS[kind]} job is already {job['status']}: wait for it or cancel it")


def train_fields(app: UiApp, kind: str, recipe: str = DEFAULT_RECIPE) -> dict:
    """The training form's steps, rank and learning rate for `kind` (subject | motion) under `recipe`."""
    cfg = app.profile.train_config(kind, _recipe(recipe))
    return {"steps": cfg.steps, "rank": cfg.rank, "lr": cfg.lr}


def _recipe(recipe: str | None) -> str:
    return get_recipe(recipe or DEFAULT_RECIPE).name  # an unknown name: the CLI's one-line error


def train_subject(app: UiApp, name: str, steps, rank, lr, use_sura: bool = True, validate_every=0,
                  resume: bool = False, recipe: str = DEFAULT_RECIPE) -> dict:
    """Queue smrabooth train-subject on the prepared subject; returns the job."""
    from smrabooth.data.folders import read_subject_folder

    data = app.wd.subject(name) / "data"
    if not (data / "metadata.csv").is_file():
        raise SmraboothError(f"subject {safe_name(name)} is not prepared: upload photos (or use the example) first")
    use_mask = (data / "masks").is_dir()
    read_subject_folder(data, require_masks=use_mask)  # a broken set fails here, before a job is queued
    steps, rank = _positive(steps, "steps"), _positive(rank, "rank")
    lr = _positive(lr, "learning rate", float)
    recipe = _recipe(recipe)
    _busy(app, "train_subject")
    run = _training_run(app, "subject", name, resume)
    validate_every = parse_number("validate every", validate_every or 0, 0, None, integer=True)
    params = {"name": safe_name(name), "data": str(data), "out": str(run), "recipe": recipe, "steps": steps,
              "rank": rank, "lr": lr, "use_sura": bool(use_sura), "use_mask": use_mask, "resume": bool(resume),
              "checkpoint_every": max(1, min(app.profile.train_config("subject", recipe).checkpoint_every, steps)),
              "validate_every": validate_every,
              "validation_prompt": f"a picture of V* {safe_name(name)}" if validate_every else None}
    verb = "resume" if resume else "train"
    return app.queue.submit("train_subject", f"{verb} subject {safe_name(name)} ({recipe}, {steps} steps)", params)


# ------------------------------------------------------------------------------------------------- motion
def prepare_motion_clip(app: UiApp, name: str, clip, caption: str, start=0.0, frames=None, fps=None) -> Path:
    """smrabooth prepare-motion on one uploaded clip (trim from `start`, `frames` frames at `fps`), then the
    check the trainer makes: the clip must hold the frames training needs. Returns the prepared clip."""
    from smrabooth.data.folders import VIDEO_EXTS
    from smrabooth.data.motion import load_motion_frames
    from smrabooth.data.prepare_motion import prepare_motion

    if not clip:
        raise SmraboothError("no clip given: choose a video file to upload")
    path = upload_path(clip)
    if path.suffix.lower() not in VIDEO_EXTS:
        raise SmraboothError(f"{path.name} is not a video file ({', '.join(sorted(VIDEO_EXTS))})")
    if not (caption or "").strip():
        raise SmraboothError("the caption is empty: describe the clip with the S* token, e.g. "
                             "'a person S* dribbling a basketball'")
    m = app.profile.train_config("motion")
    frames = parse_number("frames", frames or m.frames, 0, 10000, integer=True)
    fps = parse_number("fps", fps or m.fps, 1, 240, integer=True)
    start = parse_number("start", start or 0.0, 0, 1e7)
    folder = app.wd.motion(name)
    upload = app.wd.save_uploads([path], folder / "uploads", replace=True)[0]
    results = prepare_motion([upload], safe_name(name), folder / "data", caption=caption.strip(), frames=frames,
                             fps=fps, start=start, overwrite=True, log=lambda msg: None,
                             adopt_unmarked=True)
    prepared = folder / "data" / results[0].file_name
    load_motion_frames(prepared, frames, fps, m.height, m.width)  # too short: the trainer's error
    (folder / "trim.json").write_text(json.dumps({"start": start, "frames": frames, "fps": fps,
                                                  "caption": results[0].text}) + "\n")
    return prepared


def use_example_motion(app: UiApp) -> tuple[str, Path, str]:
    ex = need_examples(app)
    clip = prepare_motion_clip(app, ex.motion_name, ex.motion_clip, ex.motion_caption)
    return ex.motion_name, clip, ex.motion_caption


def train_motion(app: UiApp, name: str, steps, rank, lr, use_mora: bool = True, validate_every=0,
                 resume: bool = False, recipe: str = DEFAULT_RECIPE) -> dict:
    """Queue smrabooth train-motion on the prepared clip; returns the job."""
    from smrabooth.data.folders import read_motion_folder

    folder = app.wd.motion(name)
    data = folder / "data"
    if not (data / "metadata.csv").is_file():
        raise SmraboothError(f"motion {safe_name(name)} is not prepared: upload a clip (or use the example) first")
    items = read_motion_folder(data)
    trim = read_json(folder / "trim.json") or {}
    steps, rank = _positive(steps, "steps"), _positive(rank, "rank")
    lr = _positive(lr, "learning rate", float)
    recipe = _recipe(recipe)
    _busy(app, "train_motion")
    run = _training_run(app, "motion", name, resume)
    validate_every = parse_number("validate every", validate_every or 0, 0, None, integer=True)
    params = {"name": safe_name(name), "data": str(data), "out": str(run), "recipe": recipe, "steps": steps,
              "rank": rank, "lr": lr, "use_mora": bool(use_mora), "resume": bool(resume), "frames": trim.get("frames"),
              "fps": trim.get("fps"),
              "checkpoint_every": max(1, min(app.profile.train_config("motion", recipe).checkpoint_every, steps)),
              "validate_every": validate_every, "validation_prompt": items[0].text if validate_every else None}
    verb = "resume" if resume else "train"
    return app.queue.submit("train_motion", f"{verb} motion {safe_name(name)} ({recipe}, {steps} steps)", params)


# ------------------------------------------------------------------------------------------ job progress
@dataclass
class TrainView:
    status: str  # one line: what the job is doing, or its error
    progress: float  # 0..1
    losses: list[dict]  # rows {step, term, value} for a line plot
    validation: str | None  # newest validation video
    flow_video: str | None  # motion: the reference clip's flow
    job_id: str | None


def job_status_line(app: UiApp, job: dict | None, progress: float | None = None) -> str:
    if job is None:
        return "no job yet"
    status = job["status"]
    if status == "failed" or status in ("cancelled", "interrupted"):
        return job.get("error") or status
    if status == "done":
        took = (job.get("finished") or 0) - (job.get("started") or 0)
        return f"done: {job['title']} in {took:.0f} s"
    if status == "running" and progress is not None:
        return f"running: {job['title']} ({100 * progress:.0f}%)"
    return f"{status}: {job['title']}"


def train_view(app: UiApp, kind: str) -> TrainView:
    """The newest training job of `kind` ('train_subject'/'train_motion') as the page shows it: read from
    the run folder the trainer writes (log.jsonl, validation/), so it survives a page reload."""
    job = app.queue.latest(kind)
    if job is None:
        return TrainView("no training yet", 0.0, [], None, None, None)
    run = Path(job["params"]["out"])
    log = run / "log.jsonl"
    records = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()] if log.is_file() else []
    losses = [{"step": r["step"], "term": k, "value": v} for r in records for k, v in r.items()
              if k not in ("step", "lr", "seconds", "phase", "loss") and isinstance(v, (int, float))]
    steps = job["params"]["steps"]
    progress = 1.0 if job["status"] == "done" else (records[-1]["step"] / steps if records else 0.0)
    validation = sorted((run / "validation").glob("step-*.mp4"), key=lambda p: int(p.stem.split("-")[1])) \
        if (run / "validation").is_dir() else []
    flow = run.parent / f"{run.name}.flow.mp4"
    return TrainView(job_status_line(app, job, progress), progress, losses,
                     str(validation[-1]) if validation else None, str(flow) if flow.is_file() else None, job["id"])


def cancel_latest(app: UiApp, kind: str) -> str:
    job = app.queue.latest(kind)
    if job is None or job["status"] not in ("queued", "running"):
        raise SmraboothError("no job to cancel: nothing is queued or running")
    app.queue.cancel(job["id"])
    return f"cancelling {job['title']}"


def jobs_table(app: UiApp, limit: int = 20) -> list[list]:
    rows = []
    for job in reversed(app.queue.list()[-limit:]):
        when = time.strftime("%H:%M:%S", time.localtime(job["created"]))
        rows.append([when, job["title"], job["status"], job.get("error") or ""])
    return rows


# ---------------------------------------------------------------------------------------------- generate
@dataclass
class LibraryEntry:
    kind: str  # subject | motion
    run: str  # run folder name, e.g. heart-1
    lora: Path
    data: str | None  # the prepared folder it was trained on
    thumbnail: Path | None

    @property
    def label(self) -> str:
        return f"{self.kind}: {self.run}"


def library(app: UiApp, kind: str) -> list[LibraryEntry]:
    """Finished LoRAs of the work folder's runs, newest first, each with a thumbnail."""
    from smrabooth.config import read_yaml

    out = []
    for run in sorted(app.wd.runs(kind).iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        lora = run / f"{kind}_lora.safetensors"
        if not lora.is_file():
            continue
        data = read_yaml(run / "config.yaml").get("data") if (run / "config.yaml").is_file() else None
        out.append(LibraryEntry(kind, run.name, lora, data, _thumbnail(run, kind, data)))
    return out


def _thumbnail(run: Path, kind: str, data: str | None) -> Path | None:
    thumb = run / "thumbnail.png"
    if thumb.is_file():
        return thumb
    if not data or not Path(data).is_dir():
        return None
    from PIL import Image

    try:
        if kind == "subject":
            images = sorted((Path(data) / "images").glob("*"))
            if not images:
                return None
            im = Image.open(images[0]).convert("RGB")
        else:
            from smrabooth.video import read_video

            clips = sorted(Path(data).glob("*.mp4"))
            if not clips:
                return None
            frames = read_video(clips[0]).frames
            im = Image.fromarray(frames[len(frames) // 2])
    except (OSError, SmraboothError):
        return None
    im.thumbnail((160, 160))
    im.save(thumb)
    return thumb


def _entry(app: UiApp, kind: str, label: str | None) -> LibraryEntry | None:
    if not label or label == "none":
        return None
    for e in library(app, kind):
        if e.label == label:
            return e
    raise SmraboothError(f"no finished {kind} LoRA {label!r} in the work folder: pick one from the list")


# the Generate page's fields a recipe fills in
PAGE_FIELDS = ("steps", "guidance", "frames", "height", "width", "subject_scale_early", "subject_scale", "motion_scale",
               "negative_prompt")


def preset_fields(app: UiApp, preset: str = DEFAULT_RECIPE) -> dict:
    """The Generate page's fields for a recipe's sampler (generate --preset); on an SMRA-Sprites model its
    own video size, frames and steps."""
    fields = app.profile.generate_fields(_recipe(preset))
    return {k: fields[k] for k in PAGE_FIELDS}


def generate(app: UiApp, subject: str | None, motion: str | None, prompt: str, seed=0, steps=None, guidance=None,
             subject_scale_early=None, subject_scale=None, motion_scale=None, t_point=None, frames=None,
             height=None, width=None, baseline: bool = True, preset: str = DEFAULT_RECIPE,
             negative_prompt: str | None = None) -> dict:
    """Queue smrabooth generate with the chosen LoRAs (and the no-LoRA baseline on the same seed): the
    recipe's sampler settings (as `generate --preset`), then the page's fields."""
    from dataclasses import asdict

    from smrabooth.config import apply_dict
    from smrabooth.sampling import GenerateConfig

    prompt = (prompt or "").strip()
    if not prompt:
        raise SmraboothError("the prompt is empty: e.g. 'a V* dog doing S* on a beach'")
    s, m = _entry(app, "subject", subject), _entry(app, "motion", motion)
    preset = _recipe(preset)
    given = {"steps": steps, "guidance": guidance, "subject_scale_early": subject_scale_early,
             "subject_scale": subject_scale, "motion_scale": motion_scale, "frames": frames, "height": height,
             "width": width}
    fields = {k: parse_number(k.replace("_", " "), v, integer=k in ("steps", "frames", "height", "width"))
              for k, v in given.items() if v is not None and v != ""}  # ranges: GenerateConfig.validate
    t_point = str(t_point).strip() if t_point is not None else ""
    if t_point and not (t_point.isascii() and t_point.isdigit()):
        raise SmraboothError(f"T_point {t_point!r} must be a step number (or empty: the recipe's, by noise level)")
    if negative_prompt is not None:
        fields["negative_prompt"] = negative_prompt.strip() or None
    config = apply_dict(GenerateConfig(), app.profile.generate_fields(preset), f"recipe {preset}")
    config = apply_dict(config, {**fields, "prompt": prompt, "seed": parse_number("seed", seed or 0, integer=True),
                                 "t_point": int(t_point) if t_point else None}, "the page").validate()
    _busy(app, "generate")
    out = app.wd.new_stamped("videos")
    params = {"out": str(out), "subject_lora": str(s.lora) if s else None, "motion_lora": str(m.lora) if m else None,
              "subject_data": s.data if s else None, "motion_data": m.data if m else None,
              "config": asdict(config), "baseline": bool(baseline), "preset": preset}
    loras = " + ".join(e.run for e in (s, m) if e) or "no LoRA"
    return app.queue.submit("generate", f"generate '{prompt}' ({loras}, {preset}, seed {config.seed})", params)


@dataclass
class GenerateView:
    status: str
    progress: float
    result: str | None
    baseline: str | None
    settings: str


def generate_view(app: UiApp) -> GenerateView:
    job = app.queue.latest("generate")
    if job is None:
        return GenerateView("no video yet", 0.0, None, None, "")
    out = Path(job["params"]["out"])
    progress = app.queue.progress(job["id"])
    fraction = 1.0 if job["status"] == "done" else progress.get("step", 0) / max(1, progress.get("steps", 1))
    result, base = out / "result.mp4", out / "baseline.mp4"
    settings = (out / "settings.json").read_text() if (out / "settings.json").is_file() else ""
    return GenerateView(job_status_line(app, job, fraction), fraction,
                        str(result) if job["status"] == "done" and result.is_file() else None,
                        str(base) if job["status"] == "done" and base.is_file() else None, settings)


# ---------------------------------------------------------------------------------------------- evaluate
def generated_videos(app: UiApp) -> list[tuple[str, str]]:
    """(label, path relative to the work folder) of every generated video, newest first."""
    out = []
    for folder in sorted((app.wd.root / "videos").iterdir(), reverse=True):
        settings = read_json(folder / "settings.json")
        if not settings:
            continue
        prompt = settings["config"]["prompt"]
        for name in ("result", "baseline"):
            if (folder / f"{name}.mp4").is_file():
                what = "with LoRAs" if name == "result" else "baseline, no LoRA"
                out.append((f"{folder.name} {what}: {prompt}", f"videos/{folder.name}/{name}.mp4"))
    return out


def metric_choices() -> list[str]:
    from smrabooth.metrics.runner import METRICS

    return list(METRICS)


def evaluate(app: UiApp, videos: list[str], metrics: list[str]) -> dict:
    """Queue smrabooth evaluate on chosen generated videos; each video's prompt, subject images and motion
    reference come from its settings.json (the LoRAs' training data)."""
    from smrabooth.data.folders import read_motion_folder
    from smrabooth.metrics.runner import METRICS

    if not videos:
        raise SmraboothError("no videos chosen: pick generated videos to evaluate")
    unknown = [m for m in metrics or [] if m not in METRICS]
    if not metrics or unknown:
        raise SmraboothError(f"choose metrics from {', '.join(METRICS)}" + (f" (unknown: {', '.join(unknown)})"
                                                                            if unknown else ""))
    items = []
    for rel in videos:
        video = app.wd.inside(rel)
        settings = read_json(video.parent / "settings.json")
        if not video.is_file() or settings is None or video.parent.parent != app.wd.root / "videos":
            raise SmraboothError(f"{rel} is not a video generated in this work folder")
        subject_images, reference = [], None
        if settings.get("subject_data") and (Path(settings["subject_data"]) / "images").is_dir():
            subject_images = [str(p) for p in sorted((Path(settings["subject_data"]) / "images").iterdir())]
        if settings.get("motion_data") and Path(settings["motion_data"]).is_dir():
            reference = str(read_motion_folder(settings["motion_data"])[0].video_path)
        items.append({"method": "baseline" if video.stem == "baseline" else "with LoRAs", "video": str(video),
                      "prompt": settings["config"]["prompt"], "subject_images": subject_images,
                      "reference_video": reference})
    _busy(app, "evaluate")
    out = app.wd.new_stamped("evaluations")
    return app.queue.submit("evaluate", f"evaluate {len(items)} video(s), {len(metrics)} metric(s)",
                            {"out": str(out), "items": items, "metrics": list(metrics)})


@dataclass
class EvaluateView:
    status: str
    table: str
    skipped: str  # markdown list: which metric did not run and why
    report_html: str  # the report page, embedded


def evaluate_view(app: UiApp) -> EvaluateView:
    from smrabooth.metrics.runner import LABELS

    job = app.queue.latest("evaluate")
    if job is None:
        return EvaluateView("no evaluation yet", "", "", "")
    result = job.get("result") or {}
    skipped = "\n".join(f"- **{LABELS.get(k, k)}** skipped: {v}" for k, v in (result.get("skipped") or {}).items())
    report = Path(result["report"]) if result.get("report") else None
    page = ""
    if report and report.is_file():
        page = (f"<iframe title='metrics report' style='width:100%;height:520px;border:1px solid #ccc' "
                f"srcdoc=\"{html.escape(report.read_text(), quote=True)}\"></iframe>")
    return EvaluateView(job_status_line(app, job), result.get("table", ""), skipped, page)
