"""The model the app runs on, and the defaults its pages start from.

Two kinds of model: a real Wan2.1 model (a hub id or folder: every training and sampling default is
the chosen recipe's, smrabooth.recipes), or an SMRA-Sprites bundle (the small model shipped with
smrabooth; its alignment encoders are inside the bundle and its clips are small, so the sizes, steps
and ranks of every recipe are scaled down the way `smrabooth demo` does). With no --model the app runs
on the bundled SMRA-Sprites model, and the sprite world provides an example subject and motion.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from smrabooth.data.segment import DEFAULT_DETECTOR, DEFAULT_SAM
from smrabooth.errors import SmraboothError
from smrabooth.recipes import DEFAULT_RECIPE


def sprites_module(name: str):
    """A module of the SMRA-Sprites lab (smrabooth_sprites), imported only when the app runs on its model."""
    import importlib

    return importlib.import_module(f"smrabooth_sprites.{name}")


@dataclass
class ModelProfile:
    model: str  # folder (absolute) or hub id
    device: str  # cpu | cuda
    sprites: bool  # an SMRA-Sprites bundle
    encoder: str  # SuRA's DINOv2
    flow_model: str  # MoRA's SEA-RAFT
    # settings this model puts on top of any recipe (empty for a Wan model: the recipe's own)
    subject: dict = field(default_factory=dict)  # SubjectTrainConfig fields
    motion: dict = field(default_factory=dict)  # MotionTrainConfig fields
    generate: dict = field(default_factory=dict)  # GenerateConfig fields
    eval_dino: str | None = None  # DINO-I model (None: the evaluator's default)
    detector: str = DEFAULT_DETECTOR  # the mask tool's GroundingDINO (hub id or folder)
    sam: str = DEFAULT_SAM  # the mask tool's SAM
    recipe: str = DEFAULT_RECIPE  # the recipe the pages start from
    use_mora: bool = True  # the Motion page's MoRA box to start with
    cotracker_checkpoint: str | None = None  # Motion Fidelity's CoTracker3 (smrabooth ui --cotracker-checkpoint)
    cotracker_repo: str | None = None
    aesthetic_head: str | None = None  # Aesthetic Quality's LAION head (smrabooth ui --aesthetic-head)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelProfile:
        return cls(**d)

    @property
    def label(self) -> str:
        return f"SMRA-Sprites bundle {self.model}" if self.sprites else self.model

    def train_config(self, kind: str, recipe: str = DEFAULT_RECIPE, **settings):
        """The trainer's config for `kind` (subject | motion): the recipe's defaults, this model's settings on
        top, then `settings` (not validated yet)."""
        from smrabooth.train.motion import MotionTrainConfig
        from smrabooth.train.subject import SubjectTrainConfig

        cls = {"subject": SubjectTrainConfig, "motion": MotionTrainConfig}[kind]
        encoder = {"encoder": self.encoder} if kind == "subject" else {"flow_model": self.flow_model}
        return cls.from_recipe(recipe, **{**encoder, **getattr(self, kind), **settings})

    def generate_fields(self, recipe: str = DEFAULT_RECIPE) -> dict:
        """GenerateConfig fields: the recipe's sampler (generate --preset), this model's settings on top."""
        from smrabooth.sampling import PRESETS

        if recipe not in PRESETS:
            raise SmraboothError(f"recipe {recipe!r}: choose one of {', '.join(PRESETS)}")
        return {**PRESETS[recipe], **self.generate}


def is_sprites_bundle(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "dinov2").is_dir() and (p / "searaft").is_dir() and (p / "model_index.json").is_file()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_profile(model: str | None, device: str | None = None) -> ModelProfile:
    """--model DIR|HUB_ID, or the bundled SMRA-Sprites model when none is given."""
    device = device or default_device()
    if model is None:
        model = str(sprites_module("bundle").bundled_model_dir())
    elif os.path.isdir(model):
        model = str(Path(model).resolve())
    elif os.path.exists(model):
        raise SmraboothError(f"--model {model} is a file: pass a model folder or a hub id")
    if is_sprites_bundle(model):
        return sprites_profile(model, device)
    return wan_profile(model, device)


def wan_profile(model: str, device: str) -> ModelProfile:
    from smrabooth.recipes import DINOV2_GIANT, SEARAFT_SPRING_M

    return ModelProfile(model=model, device=device, sprites=False, encoder=DINOV2_GIANT, flow_model=SEARAFT_SPRING_M)


def sprites_profile(model: str, device: str) -> ModelProfile:
    """The bundle's clip size, frames and fps, and `smrabooth demo`'s training settings (experiment.DEMO_SETTINGS:
    steps, recipe, where the subject LoRA is trained, MoRA's settings, learning rate) as the lab's trainers take
    them (lab_subject_settings, lab_motion_settings): the one place the app takes the sprite world's defaults from,
    so a change of the demo's settings reaches the app unchanged. The demo trains with MoRA, so the page starts so."""
    exp = sprites_module("experiment")
    settings = exp.demo_settings(model, device)
    size = settings.size
    return ModelProfile(
        model=model, device=device, sprites=True, encoder=str(Path(model) / "dinov2"),
        flow_model=str(Path(model) / "searaft"), eval_dino=str(Path(model) / "dinov2"), recipe=settings.recipe,
        use_mora=True,
        subject={**exp.lab_subject_settings(settings), "validation_frames": settings.frames,
                 "validation_steps": settings.gen_steps},
        motion={**exp.lab_motion_settings(settings), "validation_steps": settings.gen_steps},
        generate={"frames": settings.frames, "height": size, "width": size, "steps": settings.gen_steps,
                  "guidance": settings.guidance, "fps": settings.fps})


# ----------------------------------------------------------------------------------------------- examples
EXAMPLE_SUBJECT = 0  # index into the held-out subjects (the heart)
EXAMPLE_MOTION = "spiral"


@dataclass
class Examples:
    subject_name: str
    subject_images: list[Path]
    subject_masks: list[Path]
    motion_name: str
    motion_clip: Path
    motion_caption: str
    prompt: str


def write_examples(root: Path, profile: ModelProfile) -> Examples | None:
    """The sprite world's example subject (4 stills of a held-out sprite, with exact masks) and motion
    (one clip of a held-out motion family), written once into root; None for a real Wan model."""
    if not profile.sprites:
        return None
    folders, world = sprites_module("folders"), sprites_module("world")
    from smrabooth.video import write_video

    design = world.HELDOUT_SUBJECTS[EXAMPLE_SUBJECT]
    exp = sprites_module("experiment")
    background = exp.default_background(design)
    size, frames, fps = profile.generate["height"], profile.motion["frames"], profile.motion["fps"]  # sprites
    subject = root / "subject"
    if not (subject / "metadata.csv").is_file():
        import shutil

        shutil.rmtree(subject, ignore_errors=True)
        folders.write_subject_folder(subject, design, 4, seed=0, size=size)
    clip_path = root / "motion" / f"{EXAMPLE_MOTION}.mp4"
    clip = world.sample_family_clips(EXAMPLE_MOTION, 1, seed=101, frames=frames, size=size)[0]
    if not clip_path.is_file():
        clip_path.parent.mkdir(parents=True, exist_ok=True)
        write_video(clip.frames, clip_path, fps=fps)
    return Examples(
        subject_name=design.shape, subject_images=sorted((subject / "images").glob("*.png")),
        subject_masks=sorted((subject / "masks").glob("*.png")), motion_name=EXAMPLE_MOTION,
        motion_clip=clip_path, motion_caption=folders.motion_text(clip.design, clip.background),
        prompt=folders.combined_prompt(design.shape, background))
