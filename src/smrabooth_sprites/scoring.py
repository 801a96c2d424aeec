"""Scoring a generated SMRA-Sprites clip against the world's ground truth (docs/bench-sprites.md).

A generated clip is compared with what the customization was taught:
- the subject reference images (exact masks) for appearance,
- the reference motion clips (exact positions) for motion,
- the prompt's background colour,
and checked for temporal consistency. Every measure is a number per clip; `SCORE_COLUMNS` lists them.

The encoder measures use the bundle's DINOv2 (the same encoder SuRA aligns to), the tracklet motion
fidelity chains the bundle's SEA-RAFT (the flow model MoRA aligns to). The pixel, trajectory and
background measures need no model: they read the sprite off the video the way `track_sprite` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from smrabooth.errors import SmraboothError

from .analysis import border_pixels, classify_motion, track_sprite, trajectory_similarity
from .world import COLORS, SpriteDesign

# column -> what it is (higher is better except bg_dist)
SCORE_COLUMNS = {
    "dino_i": "DINOv2 CLS cosine of frames to the subject images (mean over pairs)",
    "fg_color": "colour-histogram intersection of the segmented foreground with the subject's pixels (0-1)",
    "traj": "trajectory similarity of the tracked centre to the best reference clip (0-1)",
    "family_ok": "1 if classify_motion of the tracked centre is the reference family",
    "motion_fidelity": "tracklet motion fidelity (x100, SEA-RAFT tracks on the sprite) to the best reference clip",
    "bg_ok": "1 if the dominant border colour's nearest palette colour is the prompt's",
    "bg_dist": "RGB distance of the dominant border colour to the prompt's colour (lower is better)",
    "temporal": "mean DINOv2 CLS cosine of adjacent frames",
}
# Bins per RGB channel of the foreground colour histogram: the palette colours are > 80 apart, so 4 bins
# (64 wide) separate most of them while a generated colour a little off still lands in the same bin.
HIST_BINS = 4
FG_THRESHOLD = 60.0  # track_sprite's: RGB distance from the border colour that counts as sprite


@dataclass
class SpriteReference:
    """What a generated clip is measured against (the data the two LoRAs were trained on + the prompt)."""

    design: SpriteDesign
    images: np.ndarray  # uint8 (N, H, W, 3) subject stills
    masks: np.ndarray  # bool (N, H, W) their exact sprite masks
    family: str  # the motion family taught
    motion_frames: list  # per reference clip: uint8 (F, H, W, 3)
    motion_masks: list  # per reference clip: bool (F, H, W)
    motion_positions: list  # per reference clip: float (F, 2) exact centres
    background: str  # the test prompt's background colour
    cache: dict = field(default_factory=dict, repr=False)  # features and tracks, computed once


def load_reference(subject_dir, motion_dir, background: str) -> SpriteReference:
    """A reference from the folders `write_subject_folder` / `write_motion_folder` wrote (exact masks and
    positions come from subject.json's design, masks/*.png and the clips' .npz ground truth)."""
    from PIL import Image

    from .folders import load_ground_truth

    subject_dir, motion_dir = Path(subject_dir), Path(motion_dir)
    if background not in COLORS:
        raise SmraboothError(f"unknown background {background!r}: choose one of {', '.join(COLORS)}")
    info_path = subject_dir / "subject.json"
    if not info_path.is_file():
        raise SmraboothError(f"{subject_dir} is not an SMRA-Sprites subject folder (no subject.json)")
    info = json.loads(info_path.read_text())
    design = SpriteDesign(**info["design"])
    names = [im["file_name"] for im in info["images"]]
    images = np.stack([np.asarray(Image.open(subject_dir / "images" / n).convert("RGB")) for n in names])
    masks = np.stack([np.asarray(Image.open(subject_dir / "masks" / n)) > 127 for n in names])
    clips = sorted(motion_dir.glob("clip_*.npz"))
    if not clips:
        raise SmraboothError(f"{motion_dir} has no clip_*.npz ground truth (write it with write_motion_folder)")
    families = {json.loads(p.with_suffix(".json").read_text())["motion"]["family"] for p in clips}
    if len(families) != 1:
        raise SmraboothError(f"{motion_dir} mixes motion families {sorted(families)}; a reference teaches one")
    truths = [load_ground_truth(p) for p in clips]
    return SpriteReference(design, images, masks, families.pop(), [t["frames"] for t in truths],
                           [t["masks"] for t in truths], [t["positions"] for t in truths], background)


# ------------------------------------------------------------------------------------------- pixels
def border_colour(frames: np.ndarray) -> np.ndarray:
    """Median RGB of every border pixel of every frame: the background colour (the sprite covers a small
    part of the border at most)."""
    return np.median(border_pixels(frames).reshape(-1, 3), axis=0)


def background_scores(frames: np.ndarray, colour: str) -> dict:
    """bg_ok: the border colour's nearest palette entry is `colour`; bg_dist: its RGB distance to `colour`."""
    bg = border_colour(frames)
    names = list(COLORS)
    dists = np.linalg.norm(np.array([COLORS[n] for n in names], dtype=np.float32) - bg, axis=1)
    nearest = names[int(np.argmin(dists))]
    return {"bg_ok": float(nearest == colour), "bg_dist": float(np.linalg.norm(bg - np.array(COLORS[colour]))),
            "bg_detected": nearest}


def colour_histogram(pixels: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Normalised joint RGB histogram (bins^3) of (N, 3) uint8 pixels; all zeros for no pixels."""
    q = np.clip(np.asarray(pixels, dtype=np.int64) * bins // 256, 0, bins - 1)
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    h = np.bincount(idx, minlength=bins ** 3).astype(np.float64)
    return h / h.sum() if h.sum() > 0 else h


def foreground_colour_similarity(frames: np.ndarray, ref_images: np.ndarray, ref_masks: np.ndarray,
                                 bins: int = HIST_BINS, masks: np.ndarray | None = None) -> float:
    """Histogram intersection sum(min(p, q)) in [0, 1] of the generated foreground's colours (pixels farther
    than FG_THRESHOLD from the border colour, pooled over frames) and the reference sprite's pixels
    (exact masks). 1: the same colour proportions; 0: no colour in common or no foreground at all.
    `masks`: that foreground when the caller has already found it (track_sprite's third output)."""
    frames = np.asarray(frames)
    if masks is None:
        _, _, masks = track_sprite(frames, FG_THRESHOLD)
    gen = colour_histogram(frames[masks], bins)
    ref = colour_histogram(np.asarray(ref_images)[np.asarray(ref_masks, dtype=bool)], bins)
    return float(np.minimum(gen, ref).sum())


# ------------------------------------------------------------------------------------------- motion
def fill_missing(positions: np.ndarray) -> np.ndarray | None:
    """Interpolate NaN positions (frames where no sprite was found) from the others; None if fewer than 2
    frames have one."""
    p = np.asarray(positions, dtype=np.float64).copy()
    ok = np.isfinite(p).all(1)
    if ok.sum() < 2:
        return None
    t = np.arange(len(p))
    for i in range(2):
        p[:, i] = np.interp(t, t[ok], p[ok, i])
    return p


def sprite_queries(mask: np.ndarray, grid: int) -> torch.Tensor:
    """Points of a grid x grid lattice that fall on the sprite (mask of frame 0); the whole lattice when
    the mask holds none. Motion fidelity on the whole frame would be dominated by the static background,
    whose zero-length steps score 0 whatever the sprite does."""
    from smrabooth.metrics.motion_fidelity import grid_queries

    h, w = mask.shape
    q = grid_queries(h, w, grid)
    r = q[:, 1].round().long().clamp(0, h - 1)
    c = q[:, 0].round().long().clamp(0, w - 1)
    keep = torch.from_numpy(np.asarray(mask))[r, c]
    return q[keep] if keep.sum() >= 4 else q


# ------------------------------------------------------------------------------------------- scorer
@dataclass
class SpriteScorer:
    """Scores clips with a bundle's DINOv2 (`dinov2`) and SEA-RAFT (`searaft`); see SCORE_COLUMNS."""

    dinov2: object
    searaft: object
    device: str = "cpu"
    grid: int = 32  # motion-fidelity query lattice (points kept on the sprite)
    flow_iters: int | None = None
    batch: int = 16
    with_motion_fidelity: bool = True  # SEA-RAFT tracking dominates scoring time on a CPU; off -> None

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, C) DINOv2 CLS features (last hidden state, after the final norm), the
        frames resized to the encoder's own image size with ImageNet normalisation."""
        from smrabooth.models.dinov2 import IMAGENET_MEAN, IMAGENET_STD

        size = int(getattr(self.dinov2.config, "image_size", 224))
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        out = []
        for i in range(0, len(frames), self.batch):
            x = torch.from_numpy(np.ascontiguousarray(frames[i:i + self.batch])).permute(0, 3, 1, 2).float() / 255
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
            x = ((x - mean) / std).to(self.dinov2.device, self.dinov2.dtype)
            out.append(self.dinov2(pixel_values=x).last_hidden_state[:, 0].float().cpu())
        return F.normalize(torch.cat(out), dim=-1)

    def tracker(self):
        from smrabooth.metrics.tracking import FlowTracker, searaft_flow_fn

        return FlowTracker(searaft_flow_fn(self.searaft, self.flow_iters), device=self.device)

    def track(self, frames: np.ndarray, mask0: np.ndarray, tracker=None) -> torch.Tensor:
        """Tracks (N, F, 2) of the query points on the sprite of frame 0 (`mask0`), chained by SEA-RAFT."""
        tracker = tracker or self.tracker()
        return tracker(frames, sprite_queries(mask0, self.grid))[0].transpose(0, 1).float().cpu()

    def _reference_tracks(self, ref: SpriteReference) -> list:
        if "tracks" not in ref.cache:
            tracker = self.tracker()
            ref.cache["tracks"] = [self.track(f, m[0], tracker) for f, m in zip(ref.motion_frames, ref.motion_masks)]
        return ref.cache["tracks"]

    def motion_fidelity(self, frames: np.ndarray, ref: SpriteReference, gen_mask0: np.ndarray) -> float:
        """Best over reference clips of the paper's two-sided tracklet motion fidelity (x100); both videos
        are tracked by chaining SEA-RAFT from query points on the sprite in frame 0."""
        from smrabooth.metrics.motion_fidelity import match_length
        from smrabooth.metrics.motion_fidelity import motion_fidelity as mf

        tracks = self.track(frames, gen_mask0)
        scores = []
        for tr, rf in zip(self._reference_tracks(ref), ref.motion_frames):
            if tr.shape[1] != tracks.shape[1]:  # a reference of another length: resample its frames, retrack
                rf = match_length(rf, tracks.shape[1])
                tr = self.track(rf, track_sprite(rf[:1], FG_THRESHOLD)[2][0])
            scores.append(mf(tracks, tr, "two-sided"))
        return float(max(scores))

    def _appearance(self, frames: np.ndarray, ref: SpriteReference):
        """dino_i and fg_color, with what they found: the frames' features, sprite positions and masks."""
        if "image_features" not in ref.cache:
            ref.cache["image_features"] = self.features(ref.images)
        feats = self.features(frames)
        positions, _, masks = track_sprite(frames, FG_THRESHOLD)  # the foreground, found once
        scores = {"dino_i": float((ref.cache["image_features"] @ feats.T).mean()),
                  "fg_color": foreground_colour_similarity(frames, ref.images, ref.masks, masks=masks)}
        return scores, feats, positions, masks

    def score_still(self, image, ref: SpriteReference) -> dict:
        """dino_i and fg_color of one generated image (uint8 (H, W, 3)): a subject's appearance without motion."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise SmraboothError(f"a still to score must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        return self._appearance(image[None], ref)[0]

    def score(self, frames, ref: SpriteReference) -> dict:
        """Every measure of SCORE_COLUMNS for one clip (uint8 (F, H, W, 3)), plus what was detected."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
            raise SmraboothError(f"a clip to score must be uint8 (F >= 2, H, W, 3), got {frames.dtype} {frames.shape}")
        out, feats, positions, masks = self._appearance(frames, ref)
        # motion
        filled = fill_missing(positions)
        if filled is None:  # no sprite to follow: no motion was reproduced
            out.update(traj=0.0, family_ok=0.0, family_detected="none")
        else:
            out["traj"] = max(trajectory_similarity(filled, p) for p in ref.motion_positions)
            out["family_detected"] = classify_motion(filled)
            out["family_ok"] = float(out["family_detected"] == ref.family)
        out["motion_fidelity"] = self.motion_fidelity(frames, ref, masks[0]) if self.with_motion_fidelity else None
        # prompt and consistency
        out.update(background_scores(frames, ref.background))
        out["temporal"] = float((feats[1:] * feats[:-1]).sum(-1).mean())
        return out


__all__ = ["SCORE_COLUMNS", "SpriteReference", "SpriteScorer", "background_scores", "border_colour",
           "colour_histogram", "fill_missing", "foreground_colour_similarity", "load_reference", "sprite_queries"]
