"""SMRA-Sprites: a procedural one-sprite video world with exact ground truth (see docs/sprites.md)."""

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
