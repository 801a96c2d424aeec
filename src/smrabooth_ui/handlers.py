"""The pages' actions as plain functions of a `UiApp` and the values of the page's inputs.

They validate what the user gave (one clear SmraboothError line, before anything is written or
queued), call the same Python API as the CLI (data preparation runs here; training, generation and
evaluation are queued as jobs, tasks.py), and return plain values (paths, texts, tables) that app.py
puts on the page. Nothing here needs Gradio or a browser.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from smrabooth.errors import SmraboothError
from smrabooth.recipes import get_recipe
from smrabooth.validation import parse_number

from . import eta
from .jobs import COMMANDS, TRAININGS, JobQueue, read_json, resumable
from .messages import page_terms
from .profile import Examples, ModelProfile, write_examples
from .workdir import Workdir, display_name, safe_file_name, safe_name, upload_path

MASK_SOURCES = ("uploaded masks", "mask tool (GroundingDINO + SAM)", "no masks")


class LongJob(SmraboothError):
    """A job that would take more than eta.WARN_SECONDS: the page asks for a second click (`confirm=token`)."""

    def __init__(self, message: str, token: str):
        super().__init__(message)
        self.token = token


class UiApp:
    """Everything a page needs: the work folder, the model profile, the job queue, the examples, the
    measured costs of jobs."""

    def __init__(self, workdir, profile: ModelProfile, queue: JobQueue | None = None, start_jobs: bool = True):
        self.wd = Workdir(workdir)
        self.profile = profile
        self.costs = eta.Costs(self.wd.root / "jobs" / "costs.json")
        self.queue = queue or JobQueue(self.wd.root, profile.to_dict(), start=start_jobs,
                                       on_finish=lambda job: eta.record_job(self.costs, self.profile, job))
        self.examples: Examples | None = write_examples(self.wd.root / "examples", profile)

    def close(self) -> None:
        self.queue.stop()

    def say(self, text: str) -> str:
        """A message in the page's own terms (messages.page_terms)."""
        return page_terms(text, self.wd.root)


def fail(command: str, error: SmraboothError, app: UiApp | None = None) -> str:
    """The error line of a page's action, in the page's terms: 'error: ...' (the CLI's message)."""
    return "error: " + (app.say(str(error)) if app is not None else page_terms(str(error)))


def _token(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_duration(app: UiApp, kind: str, params: dict, what: str, button: str, confirm: str | None) -> eta.Estimate:
    """The job's estimate; a LongJob (the page's warning) when it exceeds eta.WARN_SECONDS and the user has
    not clicked again on the same settings."""
    est = eta.estimate(app.costs, app.profile, kind, params)
    token = _token(kind, {k: v for k, v in params.items() if k not in ("out", "checkpoint_every")})
    if est.known and est.seconds > eta.WARN_SECONDS and confirm != token:
        raise LongJob(f"{what} would take {est.text()} on this {app.profile.device.upper()}. Click {button} again to "
                      "start it anyway, or lower the steps", token)
    return est


# ------------------------------------------------------------------------------------------------ subject
def subject_photos(app: UiApp, name: str) -> list[str]:
    folder = app.wd.subject(name) / "uploads"
    return [str(p) for p in sorted(folder.iterdir())] if folder.is_dir() else []


def subject_label(app: UiApp, name: str) -> str:
    """The subject's name as the user typed it, cleaned (workdir.display_name): what captions and titles say."""
    try:
        saved = (app.wd.subject(name) / "name.txt").read_text().strip()
    except (OSError, SmraboothError):
        saved = ""
    return saved or display_name(name)


def add_subject_photos(app: UiApp, name: str, photos, masks=None) -> list[str]:
    """Check every upload reads as an image, then copy photos (and masks) into the subject's folder."""
    from smrabooth.data.folders import IMAGE_EXTS, load_image

    label = display_name(name)
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
    (folder / "name.txt").write_text(label + "\n")
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
        queue_mask_tool(app, name, object_prompt)
        return ""  # the mask tool's own line (mask_tool_view) follows the job; the contact sheet comes when done
    masks_dir = None
    if mask_source == MASK_SOURCES[0]:
        if not (folder / "masks").is_dir() or not any((folder / "masks").iterdir()):
            raise SmraboothError("no masks uploaded: upload one mask per photo, named like it (dog1.jpg -> "
                                 "dog1.png), or choose the mask tool or no masks")
        masks_dir = folder / "masks"
    from smrabooth.data.prepare_subject import prepare_subject

    label = subject_label(app, name)
    prepare_subject([uploads], label, folder / "data", object_prompt=object_prompt or None,
                    masks_dir=masks_dir, overwrite=True, log=lambda m: None, adopt_unmarked=True)
    return f"prepared {len(subject_photos(app, name))} photo(s) of {label}: check the contact sheet"


def queue_mask_tool(app: UiApp, name: str, object_prompt: str | None = None) -> dict:
    """Queue the mask tool (GroundingDINO + SAM, tasks.prepare_subject_task) on the subject's uploads."""
    folder = app.wd.subject(name)
    label = subject_label(app, name)
    what = (object_prompt or "").strip() or f"a {label}"
    _busy(app, "prepare_subject")
    params = {"name": safe_name(name), "label": label, "uploads": str(folder / "uploads"), "out": str(folder / "data"),
              "object_prompt": what, "photos": len(subject_photos(app, name))}
    return app.queue.submit("prepare_subject", f"masks of {label} by the mask tool ('{what}')", params)


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


def only_examples(folder: Path, examples, what: str) -> None:
    """A subject's or motion's folder the example is about to replace holds no upload but the example's own: one of
    the user's by the example's name (their "heart" photos) is refused, never deleted."""
    import filecmp

    mine = [p for sub in ("uploads", "masks") if (folder / sub).is_dir() for p in (folder / sub).iterdir()
            if p.is_file()]
    other = next((p for p in mine if not any(filecmp.cmp(p, e, shallow=False) for e in examples)), None)
    if other is not None:
        raise SmraboothError(f"the {what} {folder.name} holds {other.name}, which is not the example's: it is kept; "
                             f"remove your uploads of {folder.name} first to use the example")


def use_example_subject(app: UiApp) -> tuple[str, Path]:
    """The sprite world's example subject, uploaded and prepared like a user's photos."""
    ex = need_examples(app)
    only_examples(app.wd.subject(ex.subject_name), [*ex.subject_images, *ex.subject_masks], "subject")
    shutil.rmtree(app.wd.subject(ex.subject_name), ignore_errors=True)
    add_subject_photos(app, ex.subject_name, ex.subject_images, ex.subject_masks)
    prepare_subject_data(app, ex.subject_name, MASK_SOURCES[0])
    return ex.subject_name, app.wd.subject(ex.subject_name) / "data" / "contact_sheet.png"


def recent_names(app: UiApp) -> tuple[str | None, str | None]:
    """The subject and the motion worked on last (newest uploads), as a reloaded page shows them again."""
    def newest(kind: str, label) -> str | None:
        folders = [f for f in (app.wd.root / kind).iterdir() if (f / "uploads").is_dir()]
        if not folders:
            return None
        return label(max(folders, key=lambda f: (f / "uploads").stat().st_mtime).name)

    return newest("subjects", lambda n: subject_label(app, n)), newest("motions", lambda n: n)


def need_examples(app: UiApp) -> Examples:
    if app.examples is None:
        raise SmraboothError("the examples come with the SMRA-Sprites model (start `smrabooth ui` without --model)")
    return app.examples


def _positive(value, what: str, cast=int):
    """A positive number typed into a form: the CLI's checks (inf, NaN, '²', 10^400 are one line)."""
    v = parse_number(what, value, integer=cast is int)
    if v <= 0:
        raise SmraboothError(f"{what} must be positive, got {value}")
    return v


def _busy(app: UiApp, kind: str) -> None:
    active = [j for j in app.queue.list(kind) if j["status"] in ("queued", "running")]
    if active:
        raise SmraboothError(f"a {COMMANDS[kind]} job is already {active[-1]['status']}: wait for it or cancel it")


def train_fields(app: UiApp, kind: str, recipe: str | None = None) -> dict:
    """The training form's steps, rank and learning rate for `kind` (subject | motion) under `recipe`."""
    cfg = app.profile.train_config(kind, _recipe(app, recipe))
    return {"steps": cfg.steps, "rank": cfg.rank, "lr": cfg.lr}


def _recipe(app: UiApp, recipe: str | None) -> str:
    return get_recipe(recipe or app.profile.recipe).name  # an unknown name: the CLI's one-line error


def _queue_training(app: UiApp, kind: str, name: str, params: dict, confirm: str | None) -> dict:
    """Estimate (warn when long), choose the checkpoint interval from the step cost, make the run folder, queue."""
    job_kind = f"train_{kind}"
    _busy(app, job_kind)
    what = f"Training the {kind} LoRA ({params['steps']} steps)"
    est = _check_duration(app, job_kind, params, what, "Train", confirm)
    default = app.profile.train_config(kind, params["recipe"]).checkpoint_every
    params["checkpoint_every"] = eta.checkpoint_every(est, params["steps"], default)
    params["out"] = str(app.wd.new_folder(app.wd.runs(kind), name))
    label = params.get("label") or safe_name(name)
    return app.queue.submit(job_kind, f"train {kind} {label} ({params['recipe']}, {params['steps']} steps)", params)


def train_subject(app: UiApp, name: str, steps, rank, lr, use_sura: bool = True, validate_every=0,
                  recipe: str | None = None, confirm: str | None = None) -> dict:
    """Queue smrabooth train-subject on the prepared subject; returns the job (LongJob: asks for a second click)."""
    from smrabooth.data.folders import read_subject_folder

    data = app.wd.subject(name) / "data"
    if not (data / "metadata.csv").is_file():
        raise SmraboothError(f"subject {display_name(name)} is not prepared: upload photos (or use the example) first")
    use_mask = (data / "masks").is_dir()
    read_subject_folder(data, require_masks=use_mask)  # a broken set fails here, before a job is queued
    steps, rank = _positive(steps, "steps"), _positive(rank, "rank")
    lr = _positive(lr, "learning rate", float)
    recipe = _recipe(app, recipe)
    validate_every = parse_number("validate every", validate_every or 0, 0, None, integer=True)
    label = subject_label(app, name)
    params = {"name": safe_name(name), "label": label, "data": str(data), "recipe": recipe, "steps": steps,
              "rank": rank, "lr": lr, "use_sura": bool(use_sura), "use_mask": use_mask,
              "validate_every": validate_every,
              "validation_prompt": f"a picture of V* {label}" if validate_every else None}
    return _queue_training(app, "subject", name, params, confirm)


def resume_training(app: UiApp, kind: str, name: str | None = None, job_id: str | None = None) -> dict:
    """Queue again the job `job_id`, or the newest stopped training of `kind` (of subject/motion `name` when
    given): it continues from its last checkpoint."""
    if job_id:
        return app.queue.resume(job_id)
    jobs = [j for j in app.queue.list(f"train_{kind}") if name is None or j["params"].get("name") == safe_name(name)]
    stopped = [j for j in jobs if resumable(j)]
    if not stopped:
        raise SmraboothError(f"nothing to resume: no {kind} training" + (f" of {display_name(name)}" if name else "") +
                             " stopped after a checkpoint; start a new training")
    return app.queue.resume(stopped[-1]["id"])


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
    m = app.profile.train_config("motion", app.profile.recipe)
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
    only_examples(app.wd.motion(ex.motion_name), [ex.motion_clip], "motion")
    clip = prepare_motion_clip(app, ex.motion_name, ex.motion_clip, ex.motion_caption)
    return ex.motion_name, clip, ex.motion_caption


def train_motion(app: UiApp, name: str, steps, rank, lr, use_mora: bool = True, validate_every=0,
                 recipe: str | None = None, confirm: str | None = None) -> dict:
    """Queue smrabooth train-motion on the prepared clip; returns the job (LongJob: asks for a second click)."""
    from smrabooth.data.folders import read_motion_folder

    folder = app.wd.motion(name)
    data = folder / "data"
    if not (data / "metadata.csv").is_file():
        raise SmraboothError(f"motion {safe_name(name)} is not prepared: upload a clip (or use the example) first")
    items = read_motion_folder(data)
    trim = read_json(folder / "trim.json") or {}
    steps, rank = _positive(steps, "steps"), _positive(rank, "rank")
    lr = _positive(lr, "learning rate", float)
    recipe = _recipe(app, recipe)
    validate_every = parse_number("validate every", validate_every or 0, 0, None, integer=True)
    params = {"name": safe_name(name), "data": str(data), "recipe": recipe, "steps": steps, "rank": rank, "lr": lr,
              "use_mora": bool(use_mora), "frames": trim.get("frames"), "fps": trim.get("fps"),
              "validate_every": validate_every, "validation_prompt": items[0].text if validate_every else None}
    if use_mora:  # the model's MoRA share of the steps (the demo's, on the sprites): what a step costs
        params["mora_max_sigma"] = app.profile.train_config("motion", recipe).mora_max_sigma
    return _queue_training(app, "motion", name, params, confirm)


# ------------------------------------------------------------------------------------------ job progress
def file_url(path: str | Path) -> str:
    """The URL Gradio serves a work-folder file under (the app allows the work folder)."""
    return "/gradio_api/file=" + quote(str(Path(path).resolve()))


def download_links(files: list[tuple[str, Path]], elem: str) -> str:
    """A row of download links (label, file) for the files that exist."""
    links = [f"<a class='smra-download' href='{file_url(f)}' download='{html.escape(f.name)}' "
             f"data-file='{html.escape(f.name)}'>{html.escape(label)}</a>" for label, f in files if Path(f).is_file()]
    return f"<div class='smra-downloads' id='{elem}'>{''.join(links)}</div>" if links else ""


def _latest_active(app: UiApp, kind: str) -> dict | None:
    """The job of `kind` queued or started most recently (a resumed job counts from its resume)."""
    jobs = app.queue.list(kind)
    return max(jobs, key=lambda j: j.get("queued_at") or j["created"]) if jobs else None


def _steps_done(app: UiApp, job: dict) -> tuple[int, int]:
    """(steps done, steps) of a job that counts steps; (0, 0) otherwise."""
    p = job["params"]
    if job["kind"] in TRAININGS:
        from smrabooth.train.state import read_log

        records = read_log(Path(p["out"]) / "log.jsonl")
        return (records[-1]["step"] if records else 0), int(p["steps"])
    if job["kind"] == "generate":
        total = eta.job_steps("generate", p) or 0
        return (total if job["status"] == "done" else app.queue.progress(job["id"]).get("step", 0)), total
    return 0, 0


def job_progress(app: UiApp, job: dict | None) -> float:
    if job is None:
        return 0.0
    if job["status"] == "done":
        return 1.0
    done, total = _steps_done(app, job)
    return done / total if total else 0.0


def job_status_line(app: UiApp, job: dict | None) -> str:
    """One line: what the job is doing, how far it is and how long it has left (and what that rests on), or
    how it ended."""
    if job is None:
        return "no job yet"
    status = job["status"]
    if status == "done":
        took = (job.get("finished") or 0) - (job.get("started") or 0)
        return f"done: {job['title']} in {eta.duration(took)[6:]}" + (f" ({job['note']})" if job.get("note") else "")
    if status in ("failed", "cancelled", "interrupted"):
        line = app.say(job.get("error") or status)
        if not line.startswith(status) and not line.startswith("error"):
            line = f"{status}: {line}"
        line = f"{line} [{job['title']}]"
        if resumable(job):
            line += ": Resume continues it from its last checkpoint, Remove discards it"
        return line
    left = eta.time_left(app.costs, app.profile, job, app.queue.progress(job["id"]))
    if status == "queued":
        return f"queued: {job['title']} · " + (f"takes {left.text()}" if left.known else left.text())
    done, total = _steps_done(app, job)
    where = f" · step {done}/{total}" if total else ""
    ahead = f"{eta.duration(left.seconds)} left ({left.basis})" if left.known else left.text()
    return f"running: {job['title']}{where} · {ahead}"


@dataclass
class TrainView:
    status: str  # one line: what the job is doing (with its ETA), or its error
    progress: float  # 0..1
    losses: list[dict]  # rows {step, term, value} for a line plot
    validation: str | None  # newest validation video
    flow_video: str | None  # motion: the reference clip's flow
    job_id: str | None
    downloads: str = ""  # links to the LoRA and the run's files


def train_view(app: UiApp, kind: str) -> TrainView:
    """The newest training job of `kind` ('train_subject'/'train_motion') as the page shows it: read from
    the run folder the trainer writes (log.jsonl, validation/), so it survives a page reload and a resume
    (the log of a resumed run continues the curves)."""
    from smrabooth.train.state import read_log

    job = _latest_active(app, kind)
    if job is None:
        return TrainView("no training yet", 0.0, [], None, None, None)
    run = Path(job["params"]["out"])
    records = read_log(run / "log.jsonl")
    losses = [{"step": r["step"], "term": k, "value": v} for r in records for k, v in r.items()
              if k not in ("step", "lr", "seconds", "phase", "loss") and isinstance(v, (int, float))]
    validation = sorted((run / "validation").glob("step-*.mp4"), key=lambda p: int(p.stem.split("-")[1])) \
        if (run / "validation").is_dir() else []
    flow = run.parent / f"{run.name}.flow.mp4"
    return TrainView(job_status_line(app, job), job_progress(app, job), losses,
                     str(validation[-1]) if validation else None, str(flow) if flow.is_file() else None, job["id"],
                     run_downloads(job))


def run_downloads(job: dict) -> str:
    run = Path(job["params"].get("out", ""))
    if job["kind"] in TRAININGS:
        kind = job["kind"].split("_")[1]
        return download_links([(f"{kind} LoRA (.safetensors)", run / f"{kind}_lora.safetensors"),
                               ("settings (config.yaml)", run / "config.yaml"), ("losses (log.jsonl)", run / "log.jsonl")],
                              f"downloads-{job['id']}")
    if job["kind"] == "generate":
        return download_links([("video (mp4)", run / "result.mp4"), ("baseline (mp4)", run / "baseline.mp4"),
                               ("settings (json)", run / "settings.json")], f"downloads-{job['id']}")
    if job["kind"] == "evaluate":
        return download_links([("report (html)", run / "report.html"), ("results (json)", run / "results.json"),
                               ("table (csv)", run / "table.csv"), ("per video (csv)", run / "per_video.csv")],
                              f"downloads-{job['id']}")
    return ""


def cancel_latest(app: UiApp, kind: str) -> str:
    active = [j for j in app.queue.list(kind) if j["status"] in ("queued", "running")]
    if not active:
        raise SmraboothError("no job to cancel: nothing is queued or running")
    app.queue.cancel(active[-1]["id"])
    return f"cancelling {active[-1]['title']}"


def jobs_table(app: UiApp, limit: int = 20) -> list[list]:
    rows = []
    for job in reversed(app.queue.list()[-limit:]):
        when = time.strftime("%H:%M:%S", time.localtime(job["created"]))
        rows.append([when, job["title"], job["status"], app.say(job.get("error") or "")])
    return rows


# ------------------------------------------------------------------------------------------------ the job page
def job_choices(app: UiApp) -> list[tuple[str, str]]:
    """(label, id) of every job, newest first, for the job page's list."""
    out = []
    for job in sorted(app.queue.list(), key=lambda j: j.get("queued_at") or j["created"], reverse=True):
        when = time.strftime("%m-%d %H:%M:%S", time.localtime(job["created"]))
        out.append((f"{when} · {job['title']} · {job['status']}", job["id"]))
    return out


@dataclass
class JobDetail:
    job_id: str | None
    status: str
    progress: float
    log: str
    samples: list[str]  # videos the job made so far (validation videos, the result)
    downloads: str
    can_cancel: bool
    can_resume: bool
    can_remove: bool


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def readable_log(text: str) -> str:
    """A job's log as a terminal would have left it: a progress bar's redraws (carriage returns) and colour
    codes gone, blank lines dropped."""
    lines = (ANSI.sub("", ln.rsplit("\r", 1)[-1]).rstrip() for ln in text.split("\n"))
    return "\n".join(ln for ln in lines if ln.strip())


def training_steps(run: Path, last: int = 8) -> str:
    """The newest records of a run's log.jsonl, one line each: 'step 12: flow 0.3104, sura -0.5212'."""
    from smrabooth.train.state import read_log

    lines = []
    for r in read_log(run / "log.jsonl")[-last:]:
        terms = ", ".join(f"{k} {v:.4g}" for k, v in r.items() if k not in ("step", "lr", "seconds", "phase")
                          and isinstance(v, (int, float)))
        lines.append(f"step {r['step']}: {terms} ({r.get('seconds', 0):.0f} s)")
    return "\n".join(lines)


def job_detail(app: UiApp, job_id: str | None) -> JobDetail:
    job = app.queue.get(job_id) if job_id else None
    if job is None:
        return JobDetail(None, "no job chosen", 0.0, "", [], "", False, False, False)
    out = Path(job["params"].get("out", ""))
    samples = []
    if job["kind"] in TRAININGS and (out / "validation").is_dir():
        samples = [str(p) for p in sorted((out / "validation").glob("step-*.mp4"),
                                          key=lambda p: int(p.stem.split("-")[1]))[-4:]]
    elif job["kind"] == "generate":
        samples = [str(p) for p in (out / "baseline.mp4", out / "result.mp4") if p.is_file()]  # the result last
    log = readable_log(app.queue.log_tail(job["id"], 60))
    if job["kind"] in TRAININGS:
        log += "\n" + training_steps(out)
    return JobDetail(job["id"], job_status_line(app, job), job_progress(app, job),
                     app.say("\n".join(log.strip().splitlines()[-30:])), samples, run_downloads(job),
                     job["status"] in ("queued", "running"), resumable(job), job["status"] != "running")


def cancel_job(app: UiApp, job_id: str | None) -> str:
    job = app.queue.get(job_id) if job_id else None
    if job is None or job["status"] not in ("queued", "running"):
        raise SmraboothError("nothing to cancel: choose a queued or running job")
    app.queue.cancel(job["id"])
    return f"cancelling {job['title']}"


def remove_job(app: UiApp, job_id: str | None) -> str:
    if not job_id:
        raise SmraboothError("no job chosen: pick one from the list")
    job = app.queue.remove(job_id)
    kept = " (its outputs are kept)" if job["status"] == "done" else ""
    return f"removed {job['title']}{kept}"


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
    from smrabooth.lora.files import run_lora_files

    out = []
    for run in sorted(app.wd.runs(kind).iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        files = run_lora_files(run, kind)  # one file, or one per Wan2.2 A14B expert (generate takes both)
        if not files:
            continue
        lora = files[0]
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


def card(thumb: Path | None, caption: str, links: str, media: str = "", elem: str = "", big: bool = False) -> str:
    """One card of a gallery: a box of fixed size (96 px, 160 px when `big`; app.CSS) with the picture or
    video fitted inside it, over its caption."""
    inner = media or (f"<img src='{file_url(thumb)}' alt='{html.escape(caption)}' loading='lazy'>" if thumb else
                      "<span class='smra-nothumb'>no picture</span>")
    return (f"<figure class='smra-card{' big' if big else ''}' {elem}><div class='smra-thumb'>{inner}</div>"
            f"<figcaption title='{html.escape(caption)}'>{html.escape(caption)}</figcaption>{links}</figure>")


def library_html(app: UiApp) -> str:
    """The Generate page's library: every finished LoRA as a card (thumbnail, name, download)."""
    entries = library(app, "subject") + library(app, "motion")
    if not entries:
        return "<p class='smra-empty'>No finished LoRA yet: train one on the Subject or Motion page.</p>"
    cards = [card(e.thumbnail, e.label, download_links([("download", e.lora)], f"lora-{e.kind}-{e.run}"),
                  elem=f"data-lora='{html.escape(e.label)}'") for e in entries]
    return f"<div class='smra-gallery' id='library-cards'>{''.join(cards)}</div>"


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


def preset_fields(app: UiApp, preset: str | None = None) -> dict:
    """The Generate page's fields for a recipe's sampler (generate --preset); on an SMRA-Sprites model its
    own video size, frames and steps."""
    fields = app.profile.generate_fields(_recipe(app, preset))
    return {k: fields[k] for k in PAGE_FIELDS}


def generate(app: UiApp, subject: str | None, motion: str | None, prompt: str, seed=0, steps=None, guidance=None,
             subject_scale_early=None, subject_scale=None, motion_scale=None, t_point=None, frames=None,
             height=None, width=None, baseline: bool = True, preset: str | None = None,
             negative_prompt: str | None = None, confirm: str | None = None) -> dict:
    """Queue smrabooth generate with the chosen LoRAs (and the no-LoRA baseline on the same seed): the
    recipe's sampler settings (as `generate --preset`), then the page's fields."""
    from dataclasses import asdict

    from smrabooth.config import apply_dict
    from smrabooth.sampling import GenerateConfig

    prompt = (prompt or "").strip()
    if not prompt:
        raise SmraboothError("the prompt is empty: e.g. 'a V* dog doing S* on a beach'")
    s, m = _entry(app, "subject", subject), _entry(app, "motion", motion)
    preset = _recipe(app, preset)
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
    params = {"subject_lora": str(s.lora) if s else None, "motion_lora": str(m.lora) if m else None,
              "subject_run": s.run if s else None, "motion_run": m.run if m else None,
              "subject_data": s.data if s else None, "motion_data": m.data if m else None,
              "config": asdict(config), "baseline": bool(baseline), "preset": preset}
    _check_duration(app, "generate", params, "This generation", "Generate", confirm)
    params["out"] = str(app.wd.new_stamped("videos"))
    loras = " + ".join(e.run for e in (s, m) if e) or "no LoRA"
    return app.queue.submit("generate", f"generate '{prompt}' ({loras}, {preset}, seed {config.seed})", params)


def result_labels(settings: dict | None) -> tuple[str, str]:
    """The labels of the result and baseline players: which LoRAs made the result, what the baseline is."""
    if not settings:
        return "Result", "Baseline (no LoRA, same seed)"
    runs = [f"{k} {Path(settings[f'{k}_lora']).parent.name}" for k in ("subject", "motion") if settings.get(f"{k}_lora")]
    if not runs:
        return ("Result: no LoRA (the plain model)",
                "Baseline (no LoRA, same seed): the same video, since no LoRA was chosen")
    injection = (settings.get("config") or {}).get("injection", "sparse")
    return f"Result: {' + '.join(runs)} ({injection} injection)", "Baseline (no LoRA, same seed)"


@dataclass
class GenerateView:
    status: str
    progress: float
    result: str | None
    baseline: str | None
    settings: str
    result_label: str = "Result"
    baseline_label: str = "Baseline (no LoRA, same seed)"
    downloads: str = ""


def generate_view(app: UiApp) -> GenerateView:
    job = _latest_active(app, "generate")
    if job is None:
        return GenerateView("no video yet", 0.0, None, None, "")
    out = Path(job["params"]["out"])
    result, base = out / "result.mp4", out / "baseline.mp4"
    settings = read_json(out / "settings.json")
    labels = result_labels(settings or {**job["params"]})
    done = job["status"] == "done"
    return GenerateView(job_status_line(app, job), job_progress(app, job),
                        str(result) if done and result.is_file() else None,
                        str(base) if done and base.is_file() else None,
                        json.dumps(settings, indent=1, ensure_ascii=False) if settings else "", *labels,
                        run_downloads(job) if done else "")


def past_generations_html(app: UiApp, limit: int = 24) -> str:
    """Every generated video of the work folder, newest first: a card that plays it (the middle frame as its
    poster), its prompt and LoRAs, and downloads of the video, its baseline and its settings."""
    cards = []
    for folder in sorted((app.wd.root / "videos").iterdir(), reverse=True):
        settings = read_json(folder / "settings.json")
        if not settings or not (folder / "result.mp4").is_file():
            continue
        runs = [Path(settings[f"{k}_lora"]).parent.name for k in ("subject", "motion") if settings.get(f"{k}_lora")]
        caption = f"{settings['config']['prompt']} · {' + '.join(runs) or 'no LoRA'} · seed {settings['config']['seed']}"
        poster = folder / "thumbnail.png"
        media = (f"<video src='{file_url(folder / 'result.mp4')}' controls loop muted preload='none'"
                 + (f" poster='{file_url(poster)}'" if poster.is_file() else "") + "></video>")
        links = download_links([("video", folder / "result.mp4"), ("baseline", folder / "baseline.mp4"),
                                ("settings", folder / "settings.json")], f"video-{folder.name}")
        cards.append(card(poster, caption, links, media, elem=f"data-video='{html.escape(folder.name)}'", big=True))
        if len(cards) >= limit:
            break
    if not cards:
        return "<p class='smra-empty'>No video yet.</p>"
    return f"<div class='smra-gallery' id='past-videos'>{''.join(cards)}</div>"


# ---------------------------------------------------------------------------------------------- evaluate
def generated_videos(app: UiApp) -> list[tuple[str, str]]:
    """(label, path relative to the work folder) of every generated video, newest first."""
    out = []
    for folder in sorted((app.wd.root / "videos").iterdir(), reverse=True):
        settings = read_json(folder / "settings.json")
        if not settings:
            continue
        prompt = settings["config"]["prompt"]
        any_lora = settings.get("subject_lora") or settings.get("motion_lora")
        for name in ("result", "baseline"):
            if (folder / f"{name}.mp4").is_file() and (name == "result" or any_lora):
                what = ("with LoRAs" if any_lora else "no LoRA") if name == "result" else "baseline, no LoRA"
                out.append((f"{folder.name} {what}: {prompt}", f"videos/{folder.name}/{name}.mp4"))
    return out


def metric_choices() -> list[str]:
    from smrabooth.metrics.runner import METRICS

    return list(METRICS)


# the Evaluate page's Motion Fidelity trackers: value -> label
TRACKER_CHOICES = {"searaft": "SEA-RAFT flow chaining (built in; not the paper's tracker, its numbers differ)",
                   "cotracker": "CoTracker3 (the paper's tracker; start the app with --cotracker-checkpoint)"}


def default_tracker(app: UiApp) -> str:
    """CoTracker3 when the app has it (given or cached), else the built-in tracker, named as such on the page."""
    from smrabooth.metrics.tracking import cached_cotracker

    return "cotracker" if app.profile.cotracker_checkpoint or cached_cotracker()[0] else "searaft"


def evaluate(app: UiApp, videos: list[str], metrics: list[str], tracker: str | None = None,
             confirm: str | None = None) -> dict:
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
    tracker = tracker or default_tracker(app)
    if tracker not in TRACKER_CHOICES:
        raise SmraboothError(f"tracker {tracker!r}: choose one of {', '.join(TRACKER_CHOICES)}")
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
        any_lora = settings.get("subject_lora") or settings.get("motion_lora")
        items.append({"method": "with LoRAs" if video.stem == "result" and any_lora else "no LoRA",
                      "video": str(video), "prompt": settings["config"]["prompt"], "subject_images": subject_images,
                      "reference_video": reference})
    _busy(app, "evaluate")
    params = {"items": items, "metrics": list(metrics), "tracker": tracker}
    _check_duration(app, "evaluate", params, "This evaluation", "Evaluate", confirm)
    params["out"] = str(app.wd.new_stamped("evaluations"))
    return app.queue.submit("evaluate", f"evaluate {len(items)} video(s), {len(metrics)} metric(s)", params)


@dataclass
class EvaluateView:
    status: str
    table: str
    skipped: str  # markdown list: which metric did not run and why
    report_html: str  # the report page, embedded
    downloads: str = ""


def evaluate_view(app: UiApp) -> EvaluateView:
    from smrabooth.metrics.runner import LABELS

    job = _latest_active(app, "evaluate")
    if job is None:
        return EvaluateView("no evaluation yet", "", "", "")
    result = job.get("result") or {}
    skipped = "\n".join(f"- **{LABELS.get(k, k)}** skipped: {app.say(v)}"
                        for k, v in (result.get("skipped") or {}).items())
    report = Path(result["report"]) if result.get("report") else None
    page = ""
    if report and report.is_file():
        page = (f"<iframe title='metrics report' style='width:100%;height:520px;border:1px solid #ccc' "
                f"srcdoc=\"{html.escape(report.read_text(), quote=True)}\"></iframe>")
    return EvaluateView(job_status_line(app, job), result.get("table", ""), skipped, page,
                        run_downloads(job) if job["status"] == "done" else "")
