"""The SMRA-Sprites benchmark: held-out subject x held-out motion cases, trained, generated and scored
against the ground truth, with the paper's ablations as named variants (docs/bench-sprites.md).

One case = (held-out subject design, held-out motion family, background of the test prompt). For a case
`run_case` writes the subject folder (stills with exact masks) and the motion folder (clips of other
train-split sprites doing the motion), trains the LoRAs its variants need, generates the combined prompt
"a V* <shape> doing S* on a <colour> background" per seed and scores every video (scoring.py).

Trained LoRAs are cached per (case, LoRA kind): `<out>/cases/<case>/loras/<kind>/`. A variant only names
which kinds it uses, so generation-only ablations (t_point, early scale, dense injection) and the
training ablations that change one LoRA (no_sura, no_mora) reuse every LoRA that is already there.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from smrabooth.config import setting
from smrabooth.errors import SmraboothError
from smrabooth.lora.targets import ALL_LAYER_TYPES
from smrabooth.recipes import PAPER, RECIPES, get_recipe

from .folders import combined_prompt, subject_text, write_motion_folder, write_subject_folder
from .world import COLORS, HELDOUT_MOTIONS, HELDOUT_SUBJECTS, SpriteDesign, sample_family_clips

_PAPER = PAPER.sampler

# Backgrounds for the test prompt, in order of preference: the first one that is not a colour of the
# sprite (so each held-out subject gets a fixed, clearly different background).
BACKGROUND_ORDER = ("blue", "green", "yellow", "gray", "cyan", "pink", "orange")


@dataclass(frozen=True)
class Case:
    subject: int  # index into HELDOUT_SUBJECTS
    family: str  # a held-out motion family
    background: str

    def __post_init__(self):
        if not 0 <= self.subject < len(HELDOUT_SUBJECTS):
            raise SmraboothError(f"subject {self.subject}: choose 0..{len(HELDOUT_SUBJECTS) - 1} (HELDOUT_SUBJECTS)")
        if self.family not in HELDOUT_MOTIONS:
            raise SmraboothError(f"motion {self.family!r}: choose from the held-out families {', '.join(HELDOUT_MOTIONS)}")
        if self.background not in COLORS or self.background in self.design.colors:
            raise SmraboothError(f"background {self.background!r} must be a palette colour that is not one of the "
                                 f"sprite's ({', '.join(sorted(self.design.colors))})")

    @property
    def design(self) -> SpriteDesign:
        return HELDOUT_SUBJECTS[self.subject]

    @property
    def name(self) -> str:
        return f"{self.design.shape}-{self.family}-{self.background}"

    @property
    def prompt(self) -> str:
        return combined_prompt(self.design.shape, self.background)

    @property
    def still_prompt(self) -> str:
        """The subject LoRA's own caption ('a picture of V* heart'): what `run_subject_stills` asks for."""
        return subject_text(self.design)


def default_background(design: SpriteDesign) -> str:
    return next(c for c in BACKGROUND_ORDER if c not in design.colors)


def parse_subjects(text: str | int | None, flag: str = "--subjects") -> list[int]:
    """'2' -> the first 2 held-out subjects; 'heart,star' (shapes) or '0,3' (indices) -> those."""
    shapes = [d.shape for d in HELDOUT_SUBJECTS]
    if text is None:
        return list(range(len(HELDOUT_SUBJECTS)))
    text = str(text).strip()
    if text.isascii() and text.isdigit() and "," not in text:  # ascii: '²' is a digit to str.isdigit
        n = int(text)
        if not 1 <= n <= len(HELDOUT_SUBJECTS):
            raise SmraboothError(f"{flag} {n}: choose 1..{len(HELDOUT_SUBJECTS)} or names ({', '.join(shapes)})")
        return list(range(n))
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.isascii() and part.isdigit() and int(part) < len(HELDOUT_SUBJECTS):
            out.append(int(part))
        elif part in shapes:
            out.append(shapes.index(part))
        else:
            raise SmraboothError(f"{flag}: unknown held-out subject {part!r}; choose from {', '.join(shapes)} "
                                 f"or indices 0..{len(HELDOUT_SUBJECTS) - 1}")
    return out


def parse_motions(text: str | None) -> list[str]:
    if text is None:
        return list(HELDOUT_MOTIONS)
    out = [p.strip() for p in str(text).split(",") if p.strip()]
    for m in out:
        if m not in HELDOUT_MOTIONS:
            raise SmraboothError(f"--motions: {m!r} is not a held-out family; choose from {', '.join(HELDOUT_MOTIONS)}")
    return out


def make_cases(subjects: list[int], motions: list[str]) -> list[Case]:
    if not subjects or not motions:
        raise SmraboothError("no cases: --subjects and --motions must each name at least one")
    return [Case(s, m, default_background(HELDOUT_SUBJECTS[s])) for s in subjects for m in motions]


# --------------------------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """Which LoRAs a variant uses (by kind, so they can be cached) and how it samples."""

    name: str
    subject: str | None = "sura"  # LoRA kind: "sura" (SuRA on), "plain" (no SuRA) or None (no subject LoRA)
    motion: str | None = "mora"  # "mora", "plain" or None
    injection: str = "sparse"
    t_point_paper: int = _PAPER.t_point  # T_point in the paper's numbering (step of its 50-step sampler)
    subject_scale_early: float = _PAPER.subject_scale_early
    subject_layers: tuple[str, ...] = _PAPER.subject_layers  # where each LoRA acts under sparse injection
    motion_layers: tuple[str, ...] = _PAPER.motion_layers
    description: str = ""


def _variants() -> dict[str, Variant]:
    v = [
        Variant("full", description=f"SuRA + MoRA, sparse injection, T_point {_PAPER.t_point}, early subject scale "
                f"{_PAPER.subject_scale_early:g}"),
        Variant("no_sura", subject="plain", description="subject LoRA trained without SuRA"),
        Variant("no_mora", motion="plain", description="motion LoRA trained without MoRA"),
        Variant("dense", injection="dense", description="both LoRAs on every layer at constant scale 1"),
        Variant("base", subject=None, motion=None, description="no LoRA (the floor)"),
        # one LoRA alone, where sparse injection puts it: which of the two a difference comes from
        Variant("subject_only", motion=None, description="the subject LoRA alone (SuRA), sparse injection"),
        Variant("motion_only", subject=None, description="the motion LoRA alone (MoRA), sparse injection"),
    ]
    v += [Variant(f"tpoint_{t}", t_point_paper=t, description=f"T_point {t} of {_PAPER.steps}")
          for t in (5, 15, 25, 45)]
    v += [Variant(f"early_{s:g}", subject_scale_early=s, description=f"subject scale {s:g} before T_point")
          for s in (0.1, 0.5, 0.8)]
    # where each LoRA acts: dense differs from full in both LoRAs' layers and in the timing; these
    # change one LoRA's layers at a time and keep the paper's timing
    v += [Variant("subject_all_layers", subject_layers=ALL_LAYER_TYPES,
                  description="subject LoRA on all six layer types (motion LoRA sparse), paper timing"),
          Variant("motion_all_layers", motion_layers=ALL_LAYER_TYPES,
                  description="motion LoRA on all six layer types (subject LoRA sparse), paper timing")]
    return {x.name: x for x in v}


VARIANTS: dict[str, Variant] = _variants()


def parse_variants(text: str | list | None) -> list[Variant]:
    names = ["full", "no_sura", "no_mora", "base"] if text is None else (
        text if isinstance(text, list) else [p.strip() for p in str(text).split(",") if p.strip()])
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SmraboothError(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
    if not names:
        raise SmraboothError("--variants is empty")
    return [VARIANTS[n] for n in dict.fromkeys(names)]


# --------------------------------------------------------------------------------------------- settings
# The bench's motion LoRA steps: on the v6 bundle 400 make a motion LoRA draw its own training clip's path from its
# own caption, 100 do not (benchmarks/history/official-recipe.md). Meant for a GPU: a MoRA step is seconds on a CPU.
BENCH_MOTION_STEPS = 400


@dataclass
class ExperimentSettings:
    """Everything but the cases and variants; sizes come from the bundle (sprites.json). `smrabooth demo` and
    `smrabooth bench sprites` have a flag for each field but the bundle's sizes and the lab's fixed choices (made
    from these fields; their defaults: DEMO_SETTINGS, and this class's own for the bench)."""

    model: str = setting("", "SMRA-Sprites bundle folder (unset: the one shipped with smrabooth_sprites)")
    out: str = setting("", cli=False)  # the run's work folder (the commands' --out, or a folder inside it)
    subject_steps: int = setting(150, "subject LoRA training steps")
    motion_steps: int = setting(BENCH_MOTION_STEPS, "motion LoRA training steps (fewer than about 400 do not "
                                "reproduce even the LoRA's own clips)")
    gen_steps: int = setting(20, "denoising steps per video")
    guidance: float = setting(_PAPER.guidance, "classifier-free guidance scale")
    subject_rank: int = setting(16, cli=False)
    motion_rank: int = setting(16, cli=False)
    lr: float = setting(5e-4, "LoRA learning rate (both LoRAs)")  # short runs on a small model: 5x the paper's
    subject_images: int = setting(4, cli=False)
    motion_clips: int = setting(2, cli=False)
    data_seed: int = setting(0, cli=False)
    device: str = setting("cpu", "where to train and generate", choices=("cpu", "cuda"))
    progress: bool = setting(True, "progress bars")
    motion_fidelity: bool = setting(True, "the SEA-RAFT-tracked motion fidelity (the slowest measure on a CPU)")
    # latents/features/flows cache; None: the trainers' (SMRABOOTH_CACHE or ~/.cache)
    cache_dir: str | None = setting(None, cli=False)
    recipe: str = setting("paper", "the trainers' recipe (docs/method.md, Recipes); the lab's settings (steps, rank, "
                          "lr, sizes) on top; the videos are sampled with the lab's own sampler either way",
                          choices=tuple(RECIPES))  # the lab's results so far are the paper's
    # on top of the recipe (None / its values: the recipe's own); docs/bench-sprites.md, "Diagnosis", says why
    subject_layer_types: tuple[str, ...] | None = setting(
        None, 'layer types the subject LoRA is trained on, e.g. q,k,ffn.0 ("" or none: the recipe\'s)',
        flag="subject_layers")
    subject_still_frames: int = setting(1, "frames of the still video each subject photo is trained as (1: one "
                                        "frame, the paper; 4k+1: the photo repeated)")
    mora_max_sigma: float = setting(1.0, "MoRA only at training draws with sigma at most this (1: every draw)")
    mora_reference: str = setting("frames", "MoRA's target: the clip's frames' flows, or those of its latent decoded "
                                  "as the estimate is", choices=("frames", "decoded"))
    gen_cache: str | None = setting(None, "a step cache for every video (generate --cache, e.g. mag:0.25): the "
                                    "bench's measures under it")
    # filled from the bundle
    size: int = setting(128, cli=False)
    frames: int = setting(17, cli=False)
    fps: float = setting(15.0, cli=False)

    def validate(self) -> ExperimentSettings:
        from smrabooth.align.mora import MORA_REFERENCES
        from smrabooth.lora.targets import parse_layer_types
        from smrabooth.validation import check_choice, check_number

        get_recipe(self.recipe)
        if self.subject_layer_types in ("", "none", ()):
            self.subject_layer_types = None  # the recipe's
        if self.subject_layer_types is not None:
            self.subject_layer_types = parse_layer_types(self.subject_layer_types)
        check_number("--mora-max-sigma", self.mora_max_sigma, 0, 1, low_open=True)
        check_choice("--mora-reference", self.mora_reference, MORA_REFERENCES)
        check_choice("--device", self.device, ("cpu", "cuda"))
        for k in ("subject_steps", "motion_steps"):
            check_number("--" + k.replace("_", "-"), getattr(self, k), 1, 10**7, integer=True)
        check_number("--gen-steps", self.gen_steps, 1, 1000, integer=True)
        check_number("--guidance", self.guidance, 0, 100)
        check_number("--lr", self.lr, 0, 1, low_open=True)
        for k in ("subject_rank", "motion_rank", "subject_images", "motion_clips"):
            check_number(k, getattr(self, k), 1, 4096, integer=True)
        check_number("data_seed", self.data_seed, 0, 2**63 - 1, integer=True)
        if self.gen_cache is not None:
            from smrabooth.step_cache import parse_cache

            parse_cache(self.gen_cache, "--gen-cache")
        return self


# The demo's settings: `smrabooth demo` and the web app on this world (docs/demo.md). A held-out subject and
# motion trained and generated in about 4 minutes on 2 CPU cores; chosen from the diagnosis in
# docs/bench-sprites.md: the subject LoRA trained where sparse injection applies it (q, k, ffn.0), MoRA against
# what the bundle's VAE can show of the clip (`mora_reference="decoded"`) and only where the one-step estimate
# is sharp and a MoRA step is affordable on a CPU (sigma <= 0.2, 1 draw in 20 under shift 5).
DEMO_SETTINGS = ExperimentSettings(subject_steps=200, motion_steps=400, gen_steps=20, recipe="paper",
                                   subject_layer_types=("q", "k", "ffn.0"), mora_max_sigma=0.2,
                                   mora_reference="decoded")


def demo_settings(model: str | None = None, device: str = "cpu", **changes) -> ExperimentSettings:
    """`DEMO_SETTINGS` on a bundle (default: the shipped one; sizes from its sprites.json), with `changes`."""
    return settings_for_bundle(replace(DEMO_SETTINGS, model=str(resolve_bundle(model)), device=device, **changes))


def resolve_bundle(model: str | None) -> Path:
    """--model DIR, or the bundle shipped with the package; clear errors for anything else."""
    from .bundle import bundled_model_dir, check_bundle_dir

    if model is None:
        return bundled_model_dir()
    path = Path(model)
    if not path.is_dir():
        raise SmraboothError(f"--model {path} is not a folder (an SMRA-Sprites bundle: Wan pipeline + dinov2/ + searaft/)")
    return check_bundle_dir(path)


def settings_for_bundle(settings: ExperimentSettings) -> ExperimentSettings:
    from smrabooth.readers import short_repr
    from smrabooth.validation import check_number

    from .bundle import BUNDLE_FILE, get_preset, read_bundle_info

    info = read_bundle_info(settings.model)
    source = Path(settings.model) / BUNDLE_FILE
    preset = info.get("preset", "small")
    if not isinstance(preset, str):
        raise SmraboothError(f"{source}: its preset {short_repr(preset)} is not a preset's name")
    cfg = info.get("config") or get_preset(preset).to_dict()
    if not isinstance(cfg, dict) or any(k not in cfg for k in ("size", "frames", "fps")):
        raise SmraboothError(f"{source}: its config {short_repr(cfg)} should give the size, frames and fps of the "
                             "bundle's videos; the file is damaged")
    settings.size = check_number(f"{source}: size", cfg["size"], 8, 4096, integer=True)
    settings.frames = check_number(f"{source}: frames", cfg["frames"], 2, 1001, integer=True)
    settings.fps = float(check_number(f"{source}: fps", cfg["fps"], 0, 240, low_open=True))
    return settings.validate()


def mora_window(frames: int) -> tuple[int, int, int]:
    """(window, drop, stride) that fit a clip of `frames` frames: the paper's drop with a window of all
    latents but one when there are at least 5 latents (17 frames: window 4, two starts), else one window of
    every latent dropping only the first frame (9 frames: window 3, drop 1)."""
    latents = 1 + (frames - 1) // 4
    if latents >= 5:
        return latents - 1, PAPER.motion.drop_frames, 1
    if latents >= 2:
        return latents, 1, 1
    raise SmraboothError(f"MoRA needs clips of at least 5 frames, the bundle makes {frames}")


# --------------------------------------------------------------------------------------------- one case
def case_dir(settings: ExperimentSettings, case: Case) -> Path:
    return Path(settings.out) / "cases" / case.name


def prepare_case_data(settings: ExperimentSettings, case: Case) -> tuple[Path, Path]:
    """The subject folder (stills + exact masks) and the motion folder (clips of random train-split sprites
    doing the family); written once per case."""
    root = case_dir(settings, case)
    subject, motion = root / "subject", root / "motion"
    if not (subject / "subject.json").is_file():
        shutil.rmtree(subject, ignore_errors=True)
        write_subject_folder(subject, case.design, settings.subject_images, seed=settings.data_seed + case.subject,
                             size=settings.size)
    if not (motion / "metadata.csv").is_file():
        shutil.rmtree(motion, ignore_errors=True)
        clips = sample_family_clips(case.family, settings.motion_clips, seed=settings.data_seed + 101,
                                    frames=settings.frames, size=settings.size)
        write_motion_folder(motion, clips, fps=settings.fps, frames=settings.frames, size=settings.size)
    return subject, motion


def _run_settings(settings: ExperimentSettings, run: Path) -> dict:
    """What every LoRA run of the lab shares: the bundle, the folder, the lr and seed, no intermediate
    checkpoints, and the content-addressed cache (the same stills/clips are encoded once across runs)."""
    return {"model": str(Path(settings.model).resolve()), "out": str(run), "lr": settings.lr,
            "seed": settings.data_seed, "checkpoint_every": 10 ** 7,
            "gradient_checkpointing": settings.device != "cpu", "save_dtype": "fp32", "cache_dir": settings.cache_dir}


# The MoRA decode stores its activations: the lab's VAE at 128 px needs little memory, and recomputing them
# (the trainer's default, for Wan at 832x480) made a MoRA step 1.5x slower on the CPU (16.2 s against 10.7 s
# under load, scripts/diagnose_mora.py's machine; the same values).
LAB_VAE_CHECKPOINTING = "none"


def lab_motion_settings(settings: ExperimentSettings) -> dict:
    """The motion trainer's fields the lab puts on top of a recipe: its steps, rank, lr and clip size, the MoRA
    window that fits the bundle's clips, its MoRA settings and SEA-RAFT (the bench, the demo and the web app
    alike)."""
    window, drop, stride = mora_window(settings.frames)
    return {"steps": settings.motion_steps, "rank": settings.motion_rank, "alpha": float(settings.motion_rank),
            "lr": settings.lr, "frames": settings.frames, "height": settings.size, "width": settings.size,
            "fps": settings.fps, "flow_model": str(Path(settings.model).resolve() / "searaft"), "window": window,
            "drop_frames": drop, "window_stride": stride, "mora_max_sigma": settings.mora_max_sigma,
            "mora_reference": settings.mora_reference, "vae_checkpointing": LAB_VAE_CHECKPOINTING}


def lab_subject_settings(settings: ExperimentSettings) -> dict:
    """The subject trainer's fields the lab puts on top of a recipe: its steps, rank, lr and size, the bundle's
    DINOv2 as SuRA's encoder, and where the LoRA is trained when the settings say (else the recipe's)."""
    layers = {"layer_types": tuple(settings.subject_layer_types)} if settings.subject_layer_types else {}
    return {"steps": settings.subject_steps, "rank": settings.subject_rank, "alpha": float(settings.subject_rank),
            "lr": settings.lr, "resolution": settings.size, "encoder": str(Path(settings.model).resolve() / "dinov2"),
            "projector_width": 256, "still_frames": settings.subject_still_frames, **layers}


def motion_train_config(settings: ExperimentSettings, motion_dir: Path, run: Path, use_mora: bool):
    """The motion LoRA's training settings under `settings.recipe`: `motion_steps` steps of its one motion LoRA,
    the MoRA window that fits the bundle's clips."""
    from smrabooth.train.motion import MotionTrainConfig

    return MotionTrainConfig.from_recipe(settings.recipe, data=str(motion_dir), use_mora=use_mora,
                                         **{**_run_settings(settings, run), **lab_motion_settings(settings)})


def subject_train_config(settings: ExperimentSettings, subject_dir: Path, run: Path, use_sura: bool):
    """The subject LoRA's training settings under `settings.recipe`, with the lab's steps, rank, lr and size
    and the bundle's DINOv2 as SuRA's encoder."""
    from smrabooth.train.subject import SubjectTrainConfig

    return SubjectTrainConfig.from_recipe(settings.recipe, data=str(subject_dir), use_sura=use_sura,
                                          **{**_run_settings(settings, run), **lab_subject_settings(settings)})


def train_lora(settings: ExperimentSettings, case: Case, which: str, kind: str, models=None,
               log=print) -> tuple[Path, bool]:
    """The cached LoRA of `which` ("subject"/"motion") and `kind` for this case, training it first when it is
    not there. Returns (path, trained_now). `models`: a loaded bundle (loaded here when None); the trainers
    return its pipeline and encoders as they found them, so one loaded bundle serves every run."""
    from smrabooth.lora.files import run_lora_files
    from smrabooth.train.motion import train_motion
    from smrabooth.train.subject import train_subject

    from .bundle import load_bundle

    run = case_dir(settings, case) / "loras" / (f"{which}_{kind}" + ("" if settings.recipe == "paper" else
                                                                     f"_{settings.recipe}"))
    lab = {"recipe": settings.recipe, "kind": kind, "data_seed": settings.data_seed,
           **(lab_subject_settings if which == "subject" else lab_motion_settings)(settings)}
    lab = json.loads(json.dumps(lab))  # as lab.json holds it (tuples as lists)
    files = run_lora_files(run, which)  # one file, or one per Wan2.2 A14B expert
    if files:
        try:
            made_with = json.loads((run / "lab.json").read_text())
        except (OSError, ValueError):
            made_with = None
        if made_with == lab:
            return files[0], False
        log(f"[{case.name}] the {which} LoRA in {run} was trained with other settings: training it again")
        shutil.rmtree(run)  # the bench's own folder (its lab.json and time.json are not the trainer's to replace)
    subject_dir, motion_dir = prepare_case_data(settings, case)
    models = models or load_bundle(settings.model, device=settings.device)
    model_dir = str(Path(settings.model).resolve())
    start = time.time()
    if which == "subject":
        cfg = subject_train_config(settings, subject_dir, run, use_sura=kind == "sura")
        log(f"[{case.name}] training the subject LoRA ({'SuRA' if kind == 'sura' else 'no SuRA'}, "
            f"{cfg.steps} steps)")
        train_subject(cfg, models.pipe, models.dinov2 if kind == "sura" else None, model_id=model_dir,
                      overwrite=True, progress=settings.progress)
    else:
        cfg = motion_train_config(settings, motion_dir, run, use_mora=kind == "mora")
        log(f"[{case.name}] training the motion LoRA ({'MoRA' if kind == 'mora' else 'no MoRA'}, "
            f"{cfg.steps} steps)")
        train_motion(cfg, models.pipe, models.searaft if kind == "mora" else None, model_id=model_dir,
                     overwrite=True, progress=settings.progress)
    (run / "time.json").write_text(json.dumps({"seconds": time.time() - start}))
    (run / "lab.json").write_text(json.dumps(lab, indent=1) + "\n")  # what --resume reuses this LoRA for
    return run_lora_files(run, which)[0], True


def generation_config(settings: ExperimentSettings, case: Case, variant: Variant, seed: int):
    from smrabooth.sampling import GenerateConfig

    # the variant's T_point is in the paper's numbering; the sampler maps it to its own steps by sigma
    return GenerateConfig(prompt=case.prompt, frames=settings.frames, height=settings.size, width=settings.size,
                          steps=settings.gen_steps, guidance=settings.guidance, seed=seed,
                          subject_scale_early=variant.subject_scale_early, injection=variant.injection,
                          subject_layers=variant.subject_layers, motion_layers=variant.motion_layers,
                          fps=settings.fps, reference_t_point=variant.t_point_paper, reference_steps=_PAPER.steps,
                          reference_shift=_PAPER.shift, cache=settings.gen_cache).validate()


@dataclass
class CaseResult:
    rows: list = field(default_factory=list)  # one dict per (variant, seed): scores + settings
    trained: list = field(default_factory=list)  # LoRA runs trained now (the others came from the cache)
    videos: dict = field(default_factory=dict)  # (variant, seed) -> uint8 frames


def run_case(settings: ExperimentSettings, case: Case, variants: list[Variant], seeds: list[int], models=None,
             scorer=None, log=print, keep_frames: bool = False, done: dict | None = None) -> CaseResult:
    """Train what the variants need (or reuse it), generate each (variant, seed) and score it.

    `models`: the loaded bundle (loaded here when None), used for training, generation and (unless
    `scorer` is given) scoring. Videos go to <case>/videos/<variant>_s<seed>.mp4. `done`: (variant, seed)
    -> a row scored by an earlier call with the same settings, kept instead of generated again."""
    from smrabooth.lora.files import load_lora, with_expert_siblings
    from smrabooth.sampling import generate
    from smrabooth.video import write_video

    from .bundle import load_bundle
    from .scoring import SpriteScorer, load_reference

    models = models or load_bundle(settings.model, device=settings.device)
    scorer = scorer or SpriteScorer(models.dinov2, models.searaft, device=settings.device,
                                    with_motion_fidelity=settings.motion_fidelity)
    pipe = models.pipe
    result = CaseResult()
    done = done or {}
    loras: dict[tuple[str, str], object] = {}
    for v in variants:
        if all((v.name, seed) in done for seed in seeds):
            continue
        for which, kind in (("subject", v.subject), ("motion", v.motion)):
            if kind is not None and (which, kind) not in loras:
                path, trained = train_lora(settings, case, which, kind, models, log)
                loras[(which, kind)] = [load_lora(p) for p in with_expert_siblings(path)]
                if trained:
                    result.trained.append(f"{which}_{kind}")
    subject_dir, motion_dir = prepare_case_data(settings, case)
    reference = load_reference(subject_dir, motion_dir, case.background)
    videos = case_dir(settings, case) / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for v in variants:
        for seed in seeds:
            if (v.name, seed) in done:
                log(f"[{case.name}] {v.name} seed {seed}: kept from the previous call")
                result.rows.append(done[(v.name, seed)])
                continue
            config = generation_config(settings, case, v, seed)
            log(f"[{case.name}] {v.name} seed {seed}: generating '{case.prompt}'")
            start = time.time()
            out = generate(pipe, config, loras.get(("subject", v.subject)), loras.get(("motion", v.motion)),
                           progress=settings.progress)
            gen_time = time.time() - start
            path = write_video(out.frames, videos / f"{v.name}_s{seed}.mp4", fps=settings.fps)
            scores = scorer.score(out.frames, reference)
            result.rows.append({"case": case.name, "subject": case.design.shape, "family": case.family,
                                "background": case.background, "variant": v.name, "seed": seed,
                                "video": str(path), "t_point": out.schedule.t_point,
                                "gen_seconds": round(gen_time, 2), **scores})
            if keep_frames:
                result.videos[(v.name, seed)] = out.frames
    return result


STILL_LORAS = {"sura": "SuRA", "plain": "no SuRA", None: "no LoRA"}  # subject LoRA kind -> row label


def run_subject_stills(settings: ExperimentSettings, case: Case, kinds: list[str | None], seeds: list[int],
                       models, scorer, log=print, done: dict | None = None) -> list[dict]:
    """The subject LoRA alone: one-frame stills of its own caption ('a picture of V* heart'), the LoRA on
    every layer it was trained on at scale 1, scored for appearance (dino_i, fg_color) per kind in `kinds`
    ("sura", "plain", None = no LoRA) and seed. Whether a LoRA learned the subject, apart from whether
    it carries it into a video. Images go to <case>/stills/<kind>_s<seed>.png; `done`: (label, seed) -> a
    row of an earlier call with the same settings, kept."""
    from PIL import Image

    from smrabooth.lora.files import load_lora, with_expert_siblings
    from smrabooth.sampling import GenerateConfig, generate

    from .scoring import load_reference

    subject_dir, motion_dir = prepare_case_data(settings, case)
    reference = load_reference(subject_dir, motion_dir, case.background)
    folder = case_dir(settings, case) / "stills"
    folder.mkdir(parents=True, exist_ok=True)
    done, rows = done or {}, []
    for kind in kinds:
        label = STILL_LORAS[kind]
        if all((label, seed) in done for seed in seeds):
            rows += [done[(label, seed)] for seed in seeds]
            continue
        lora = [load_lora(p) for p in with_expert_siblings(train_lora(settings, case, "subject", kind, models, log)[0])
                ] if kind else None
        for seed in seeds:
            if (label, seed) in done:
                rows.append(done[(label, seed)])
                continue
            config = GenerateConfig(prompt=case.still_prompt, frames=1, height=settings.size, width=settings.size,
                                    steps=settings.gen_steps, guidance=settings.guidance, seed=seed,
                                    injection="dense", fps=settings.fps)
            log(f"[{case.name}] still, {label}, seed {seed}: '{case.still_prompt}'")
            image = generate(models.pipe, config, lora, None, progress=settings.progress).frames[0]
            path = folder / f"{kind or 'base'}_s{seed}.png"
            Image.fromarray(image).save(path)
            rows.append({"case": case.name, "subject": case.design.shape, "lora": label, "seed": seed,
                         "image": str(path), **scorer.score_still(image, reference)})
    return rows


def experiment_header(settings: ExperimentSettings, cases: list[Case], variants: list[Variant], seeds: list[int]) -> dict:
    s = json.loads(json.dumps(asdict(settings)))  # as results.json holds it (tuples as lists), for --resume
    s.pop("progress")
    return {"settings": s, "cases": [c.name for c in cases], "variants": {v.name: asdict(v) for v in variants},
            "seeds": seeds, "mora_window": dict(zip(("window", "drop", "stride"), mora_window(settings.frames)))}


__all__ = [
    "BACKGROUND_ORDER",
    "BENCH_MOTION_STEPS",
    "DEMO_SETTINGS",
    "VARIANTS",
    "Case",
    "CaseResult",
    "ExperimentSettings",
    "Variant",
    "case_dir",
    "default_background",
    "demo_settings",
    "experiment_header",
    "generation_config",
    "make_cases",
    "mora_window",
    "parse_motions",
    "parse_subjects",
    "parse_variants",
    "prepare_case_data",
    "resolve_bundle",
    "run_case",
    "run_subject_stills",
    "settings_for_bundle",
    "train_lora",
]
