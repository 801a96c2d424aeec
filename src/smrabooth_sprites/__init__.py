"""SMRA-Sprites, the lab of smrabooth: a procedural one-sprite video world with exact ground truth
(docs/sprites.md), a small model bundle trained on it, and the demo and benchmark that run the method on it.

It imports the method (smrabooth) and is never imported by it; its commands (`smrabooth demo`, `smrabooth
bench sprites`, `smrabooth sprites ...`) reach the `smrabooth` command through an entry point (cli.py).

    world.py       the world: designs, motions, rendering, captions, held-out splits
    folders.py     subject and motion training folders in the method's format, sample clips
    analysis.py    sprite tracking and motion-family classification of generated clips
    scoring.py     the measures of a generated clip against the ground truth
    bundle.py      the model bundle: presets, build, save, load, the shipped one (assets/smra-sprites)
    experiment.py  cases and variants: train a case's LoRAs, generate and score each variant
    runs.py        the demo and the bench as functions
    report.py      what they write: report.html, results.json / .csv, table.md; bench --resume
    cli.py         the commands
    pretrain/      training the bundle's models, one module per stage
"""

from .analysis import classify_motion, track_sprite, trajectory_similarity
from .folders import (
    combined_prompt,
    load_ground_truth,
    motion_text,
    save_ground_truth,
    subject_text,
    write_motion_folder,
    write_subject_folder,
)
from .world import (
    COLORS,
    HELDOUT_MOTIONS,
    HELDOUT_SUBJECTS,
    MOTIONS,
    SHAPES,
    TEXTURES,
    TRAIN_MOTIONS,
    VOCABULARY,
    MotionSpec,
    SpriteClip,
    SpriteDesign,
    caption_for,
    render_clip,
    render_image,
    sample_background,
    sample_clip,
    sample_design,
    sample_family_clips,
    sample_motion,
    sample_still,
    still_caption,
    trajectory,
)

__all__ = [
    "COLORS", "HELDOUT_MOTIONS", "HELDOUT_SUBJECTS", "MOTIONS", "SHAPES", "TEXTURES", "TRAIN_MOTIONS", "VOCABULARY",
    "MotionSpec", "SpriteClip", "SpriteDesign", "caption_for", "classify_motion", "combined_prompt",
    "load_ground_truth", "motion_text", "render_clip", "render_image", "sample_background", "sample_clip",
    "sample_design", "sample_family_clips", "sample_motion", "sample_still", "save_ground_truth", "still_caption",
    "subject_text", "track_sprite", "trajectory",
    "trajectory_similarity", "write_motion_folder", "write_subject_folder",
]
