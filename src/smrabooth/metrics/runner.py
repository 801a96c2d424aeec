"""Run the metrics over a list of videos: inputs, settings, lazy model loading, skipping what cannot load,
and recording (not raising) what fails on a video so that the other metrics' results are still written."""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..config import setting
from ..errors import SmraboothError
from ..video import read_video
from .common import ModelLoadError, list_images, read_image
from .motion_fidelity import LENGTH_RULES as MF_LENGTHS
from .motion_fidelity import VARIANTS as MF_VARIANTS

METRICS = ["clip_t", "clip_i", "dino_i", "motion_fidelity", "subject_consistency", "temporal_consistency",
           "pickscore", "aesthetic", "imaging"]
LABELS = {"clip_t": "CLIP-T", "clip_i": "CLIP-I", "dino_i": "DINO-I", "motion_fidelity": "Motion Fidelity",
          "subject_consistency": "Subject Consistency", "temporal_consistency": "Temporal Consistency",
          "pickscore": "PickScore", "aesthetic": "Aesthetic Quality", "imaging": "Imaging Quality"}
# the input each metric needs besides the video, and how the user supplies it
NEEDS = {"clip_t": ("prompt", "--prompts FILE or the manifest's prompt column"),
         "pickscore": ("prompt", "--prompts FILE or the manifest's prompt column"),
         "clip_i": ("subject_images", "--subject-images DIR or the manifest's subject_images column"),
         "dino_i": ("subject_images", "--subject-images DIR or the manifest's subject_images column"),
         "motion_fidelity": ("reference_video", "--reference-video FILE or the manifest's reference_video column")}
# which loaded model each metric uses (CLIP-T, CLIP-I and temporal consistency share one CLIP)
MODEL_OF = {"clip_t": "clip", "clip_i": "clip", "temporal_consistency": "clip", "dino_i": "dino",
            "subject_consistency": "subject", "pickscore": "pickscore", "aesthetic": "aesthetic",
            "imaging": "imaging", "motion_fidelity": "tracker"}
TRACKERS = ("auto", "cotracker", "searaft")


@dataclass
class EvalItem:
    method: str
    video: Path
    prompt: str | None = None
    subject_images: list[Path] = field(default_factory=list)
    reference_video: Path | None = None


MODELS = "models (hub id or local folder)"  # sections of evaluate --help
OPTIONS = "metric options"
TEMPORAL_PAIRS = ("adjacent", "all")


@dataclass
class EvalSettings:
    """Every choice the paper leaves open; all of it is printed in the report header. `smrabooth evaluate` has a
    flag for each (made from these fields)."""

    device: str | None = setting(None, "cuda or cpu (none: cuda if available; fp16 on a GPU)")
    batch_size: int = setting(32, "frames per model call")
    local_files_only: bool | None = setting(None, cli=False)  # evaluate --offline: True
    clip_model: str = setting("openai/clip-vit-base-patch32", "CLIP-T, CLIP-I, temporal consistency", group=MODELS)
    dino_model: str = setting("facebook/dinov2-base", "DINO-I: facebook/dinov2-{small,base,large,giant}, or "
                              "facebook/dino-vits16 (DreamVideo)", group=MODELS)
    subject_model: str = setting("facebook/dino-vitb16", "subject consistency (VBench: DINO ViT-B/16)", group=MODELS)
    pickscore_model: str = setting("yuvalkirstain/PickScore_v1", "PickScore", group=MODELS)
    pickscore_processor: str = setting("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "PickScore's processor", group=MODELS)
    aesthetic_clip_model: str = setting("openai/clip-vit-large-patch14", "aesthetic quality's CLIP", group=MODELS)
    aesthetic_head: str | None = setting(None, "LAION sa_0_4_vit_l_14_linear.pth (required for aesthetic)",
                                         group=MODELS)
    musiq_checkpoint: str | None = setting(None, "pyiqa MUSIQ-SPAQ checkpoint file (imaging; none: pyiqa's default)",
                                           group=MODELS)
    temporal_pairs: str = setting("adjacent", "frame pairs of temporal consistency", choices=TEMPORAL_PAIRS,
                                  group=OPTIONS)
    mf_variant: str = setting("released", "released: the released script's score, which the paper's numbers follow "
                              "(per generated track its best reference track, identity subtracted); two-sided: Eq. 5 "
                              "as written, halved; reference-to-generated: the released formula with the roles "
                              "swapped", choices=MF_VARIANTS, group=OPTIONS)
    mf_grid: int = setting(55, "query grid size on frame 0 (CoTracker's grid_size)", group=OPTIONS)
    mf_support_grid: bool = setting(False, "CoTracker: also track its 6x6 support grid (the reference adds it only "
                                    "with a mask)", group=OPTIONS)
    mf_box: tuple[float, float, float, float] | None = setting(
        None, "only query points in this box (pixels of the generated video)", metavar="x0,y0,x1,y1", group=OPTIONS)
    mf_length: str = setting("first", "a reference with more frames than the generated video: first (its first "
                             "frames, as the paper compares 49 generated frames with the clips' first 49), resample "
                             "(spread over the generated length) or error", choices=MF_LENGTHS, group=OPTIONS)
    mf_drop_occluded: bool = setting(False, "leave out each video's tracks occluded at any frame (the identity still "
                                     "pairs tracks by query point)", group=OPTIONS)
    tracker: str = setting("auto", "auto: CoTracker3 (the paper's) when --cotracker-checkpoint is given or torch.hub "
                           "has it cached, else Motion Fidelity is skipped with the reason; searaft: the built-in "
                           "SEA-RAFT flow chaining (not comparable with the paper's numbers)", choices=TRACKERS,
                           group=OPTIONS)
    cotracker_checkpoint: str | None = setting(None, "local CoTracker3 checkpoint (e.g. scaled_offline.pth)",
                                               group=OPTIONS)
    cotracker_repo: str | None = setting(None, "local clone of facebookresearch/co-tracker (if not pip-installed)",
                                         group=OPTIONS)
    searaft_model: str | None = setting(None, "SEA-RAFT checkpoint (hub id or local path) for the built-in tracker",
                                        group=OPTIONS)
    searaft_iters: int | None = setting(None, "SEA-RAFT refinement iterations (none: the checkpoint's own)",
                                        group=OPTIONS)

    def validate(self) -> EvalSettings:
        """The values themselves (numbers, choices, the box); the files they name are checked by the command."""
        from ..validation import check_choice, check_number

        check_number("--batch-size", self.batch_size, 1, 4096, integer=True)
        check_number("--mf-grid", self.mf_grid, 2, 1000, integer=True)
        check_number("--searaft-iters", self.searaft_iters, 1, 100, integer=True, optional=True)
        check_choice("--temporal-pairs", self.temporal_pairs, TEMPORAL_PAIRS)
        check_choice("--mf-variant", self.mf_variant, MF_VARIANTS)
        check_choice("--mf-length", self.mf_length, MF_LENGTHS)
        check_choice("--tracker", self.tracker, TRACKERS)
        if self.mf_box is not None:
            self.mf_box = parse_box(self.mf_box)
        return self

    def header(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def parse_box(box) -> tuple[float, float, float, float]:
    """--mf-box: 'x0,y0,x1,y1' (or four numbers) in pixels, finite, x0 < x1 and y0 < y1."""
    import math

    try:
        values = tuple(float(x) for x in (box.split(",") if isinstance(box, str) else box))
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or not (values[0] < values[2] and
                                                                             values[1] < values[3]):
        raise SmraboothError(f"--mf-box must be x0,y0,x1,y1 in pixels (finite, x0 < x1, y0 < y1), got {box!r}")
    return values


def check_inputs(items: list[EvalItem], metrics: list[str]) -> None:
    """Fail before any model loads: unknown metrics, missing inputs, missing files."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SmraboothError(f"unknown metric(s) {', '.join(unknown)}; choose from {','.join(METRICS)}")
    if not items:
        raise SmraboothError("no videos to evaluate")
    for m in metrics:
        if m not in NEEDS:
            continue
        attr, how = NEEDS[m]
        missing = [it.video.name for it in items if not getattr(it, attr)]
        if missing:
            raise SmraboothError(f"{LABELS[m]} needs {attr.replace('_', ' ')} for every video (missing for "
                                 f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): pass {how}, "
                                 f"or leave {m} out of --metrics")
    for it in items:
        for p in [it.video, it.reference_video, *it.subject_images]:
            if p is not None and not Path(p).exists():
                raise SmraboothError(f"{p} (for {it.method} / {it.video.name}) does not exist")


def thumbnail_strip(frames: np.ndarray, n: int = 6, height: int = 64) -> str:
    """n frames side by side as a base64 JPEG data URI (embedded in the HTML report)."""
    from PIL import Image

    idx = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    h, w = frames.shape[1:3]
    tw = max(1, round(w * height / h))
    strip = np.concatenate([np.asarray(Image.fromarray(frames[i]).resize((tw, height), Image.BICUBIC)) for i in idx], 1)
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class Evaluator:
    """Loads each model on first use; a model that cannot load skips its metrics with a warning."""

    def __init__(self, settings: EvalSettings, metrics: list[str], tracker=None, warn=None):
        self.s, self.metrics = settings, list(metrics)
        self.warn = warn or (lambda msg: warnings.warn(msg, stacklevel=3))
        self.tracker_used = "caller-supplied" if tracker is not None else None  # shown beside Motion Fidelity
        self.models: dict[str, object] = {}
        self.skipped: dict[str, str] = {}  # metric -> why its model could not load
        self.failed: dict[str, dict[str, str]] = {}  # metric -> {video: error} for scoring errors
        if tracker is not None:  # tests and callers may bring their own tracker callable
            self.models["tracker"] = tracker

    def _load(self, key: str):
        s = self.s
        kw = dict(device=s.device, local_files_only=s.local_files_only, batch_size=s.batch_size)
        if key == "clip":
            from .clip_metrics import load_clip
            return load_clip(s.clip_model, **kw)
        if key == "dino":
            from .dino import load_dino
            return load_dino(s.dino_model, **kw)
        if key == "subject":
            from .vbench import load_subject_consistency_model
            return load_subject_consistency_model(s.subject_model, **kw)
        if key == "pickscore":
            from .pickscore import load_pickscore
            return load_pickscore(s.pickscore_model, s.pickscore_processor, **kw)
        if key == "aesthetic":
            from .aesthetic import load_aesthetic
            return load_aesthetic(s.aesthetic_head, s.aesthetic_clip_model, **kw)
        if key == "imaging":
            from .imaging import load_imaging
            return load_imaging(s.musiq_checkpoint, device=s.device)
        if key == "tracker":
            return self._load_tracker()
        raise KeyError(key)

    def _load_tracker(self):
        """CoTracker3 unless the SEA-RAFT tracker is asked for by name: `auto` uses CoTracker3 when its checkpoint
        is given or cached by torch.hub, and otherwise skips Motion Fidelity with the reason (never another
        tracker in silence: the two trackers' scores differ by tens of points)."""
        from .tracking import FlowTracker, cached_cotracker, load_cotracker, searaft_flow_fn

        s = self.s
        if s.tracker not in TRACKERS:
            raise ModelLoadError(f"tracker {s.tracker!r}: choose one of {', '.join(TRACKERS)}")
        if s.tracker in ("auto", "cotracker"):
            checkpoint, repo = s.cotracker_checkpoint, s.cotracker_repo
            if checkpoint is None:
                checkpoint, cached_code = cached_cotracker()
                repo = repo or cached_code
            if checkpoint is None:
                raise ModelLoadError(
                    "Motion Fidelity is scored with CoTracker3, the paper's tracker, and none is given or cached: pass "
                    "--cotracker-checkpoint FILE (scaled_offline.pth) and --cotracker-repo DIR, or --tracker searaft "
                    "for the built-in SEA-RAFT tracker (its numbers are not comparable with the paper's)")
            tracker = load_cotracker(checkpoint, repo, s.device, s.mf_support_grid)
            self.tracker_used = f"CoTracker3 ({Path(checkpoint).name})"
            return tracker
        try:
            from ..models.searaft import load_searaft
        except ImportError as e:
            raise ModelLoadError(f"the built-in tracker needs smrabooth.models.searaft ({e})") from None
        if not s.searaft_model:
            raise ModelLoadError("--tracker searaft needs --searaft-model (a SEA-RAFT checkpoint, hub id or folder)")
        model = load_searaft(s.searaft_model, device=s.device, local_files_only=s.local_files_only)
        self.tracker_used = f"SEA-RAFT flow chaining ({s.searaft_model})"
        return FlowTracker(searaft_flow_fn(model, s.searaft_iters), device=s.device, progress=True)

    def model(self, metric: str):
        key = MODEL_OF[metric]
        if key in self.models:
            return self.models[key]
        if metric in self.skipped:
            return None
        try:
            self.models[key] = self._load(key)
            return self.models[key]
        except ModelLoadError as e:
            for m in self.metrics:
                if MODEL_OF[m] == key:
                    self.skipped[m] = str(e)
            self.warn(f"skipping {', '.join(LABELS[m] for m in self.metrics if MODEL_OF[m] == key)}: {e}")
            return None

    def score(self, metric: str, model, frames, item: EvalItem, refs, ref_frames) -> float:
        s = self.s
        if metric == "clip_t":
            from .clip_metrics import clip_t
            return clip_t(model, frames, item.prompt)
        if metric == "clip_i":
            from .clip_metrics import clip_i
            return clip_i(model, frames, refs())
        if metric == "temporal_consistency":
            from .clip_metrics import temporal_consistency
            return temporal_consistency(model, frames, s.temporal_pairs)
        if metric == "dino_i":
            from .dino import dino_i
            return dino_i(model, frames, refs())
        if metric == "subject_consistency":
            from .vbench import subject_consistency
            return subject_consistency(model, frames)
        if metric == "pickscore":
            from .pickscore import pickscore
            return pickscore(model, frames, item.prompt)
        if metric == "aesthetic":
            from .aesthetic import aesthetic_quality
            return aesthetic_quality(model, frames)
        if metric == "imaging":
            from .imaging import imaging_quality
            return imaging_quality(model, frames)
        if metric == "motion_fidelity":
            from .motion_fidelity import motion_fidelity_videos
            return motion_fidelity_videos(frames, ref_frames(), model, s.mf_grid, s.mf_box, s.mf_variant,
                                          s.mf_length, s.mf_drop_occluded)
        raise KeyError(metric)

    def _score_or_record(self, metric: str, frames, item: EvalItem, refs, ref_frames) -> float | None:
        """The metric's value, or None when its model is unavailable or it fails on this video; a failure is
        recorded (and warned about) instead of raised, so one metric cannot discard the others' results."""
        model = self.model(metric)
        if model is None:
            return None
        try:
            return float(self.score(metric, model, frames, item, refs, ref_frames))
        except Exception as e:  # noqa: BLE001 - any error of one metric on one video; KeyboardInterrupt still stops
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if isinstance(e, SmraboothError):
                msg = str(e)
            self.failed.setdefault(metric, {})[str(item.video)] = msg
            self.warn(f"{LABELS[metric]} failed on {item.video.name}: {msg}")
            return None

    def run(self, items: list[EvalItem], thumbnails: bool = True) -> list[dict]:
        check_inputs(items, self.metrics)
        rows = []
        ref_cache: dict = {}
        for item in tqdm(items, desc="evaluating", unit="video"):
            frames = read_video(item.video).frames
            row = {"method": item.method, "video": str(item.video), "prompt": item.prompt or "",
                   "frames": len(frames)}

            def refs(item=item):
                key = tuple(map(str, item.subject_images))
                if key not in ref_cache:
                    ref_cache[key] = [read_image(p) for p in item.subject_images]
                return ref_cache[key]

            def ref_frames(item=item):
                key = ("video", str(item.reference_video))
                if key not in ref_cache:
                    ref_cache[key] = read_video(item.reference_video).frames
                return ref_cache[key]

            for m in self.metrics:
                row[m] = self._score_or_record(m, frames, item, refs, ref_frames)
            if "motion_fidelity" in self.metrics and row["motion_fidelity"] is not None:
                row["tracker"] = self.tracker_used
            if thumbnails:
                row["thumbnail"] = thumbnail_strip(frames)
            rows.append(row)
        return rows


def expand_subject_images(path) -> list[Path]:
    """A folder of images, one image, or several separated by ';'."""
    parts = [p for p in str(path).split(";") if p.strip()]
    out: list[Path] = []
    for p in parts:
        out.extend(list_images(p.strip()))
    return out
