"""Comparing and classifying sprite trajectories (ground truth or positions tracked in generated videos)."""

from __future__ import annotations

import functools
import itertools

import numpy as np

from smrabooth.errors import SmraboothError

from .world import _DEFAULT_RANGES, MOTION_RANGES, MOTIONS, _path

# families told apart by angle or scale rather than by the path of the centre
IN_PLACE_FAMILIES = ("spin", "grow", "shrink")
_REVERSIBLE = ("circle", "bounce", "zigzag", "figure-eight", "spiral")


def _positions(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) < 2:
        raise SmraboothError(f"{name} must be an (F, 2) array of (x, y) positions with F >= 2, got {x.shape}")
    if not np.isfinite(x).all():
        raise SmraboothError(f"{name} has NaN or infinite entries (frames where no sprite was found?)")
    return x


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    """Linear resampling in normalised time (first and last frames kept)."""
    if len(x) == n:
        return x
    src, dst = np.linspace(0, 1, len(x)), np.linspace(0, 1, n)
    return np.stack([np.interp(dst, src, x[:, i]) for i in range(x.shape[1])], 1)


def trajectory_similarity(positions_a, positions_b) -> float:
    """1 - |Da - Db| / (|Da| + |Db|) in [0, 1], with D = positions minus the first position (Frobenius norms
    over all frames; b is resampled in time to a's frame count).

    1: the same displacements; 0: opposite ones; ~0.3 for perpendicular paths of equal length. It is
    sensitive to direction, shape, timing and amplitude but not to where the path starts. Two static
    trajectories are identical (1.0)."""
    a = _positions(positions_a, "positions_a")
    b = _resample(_positions(positions_b, "positions_b"), len(a))
    da, db = a - a[0], b - b[0]
    denom = np.linalg.norm(da) + np.linalg.norm(db)
    if denom < 1e-9:
        return 1.0
    return float(1.0 - np.linalg.norm(da - db) / denom)


def border_pixels(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) -> float32 (F, 2H + 2W, 3): each frame's outermost rows and columns, where the
    background shows (a sprite covers a small part of the border at most)."""
    f = np.asarray(frames, dtype=np.float32)
    return np.concatenate([f[:, 0], f[:, -1], f[:, :, 0], f[:, :, -1]], axis=1)


def track_sprite(frames, threshold: float = 60.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the sprite in any video of this world (e.g. a generated one), from colour alone.

    Per frame, the background colour is the median of the border pixels; the foreground is every pixel
    farther than `threshold` (RGB Euclidean) from it. Returns (positions (F, 2) foreground centroids in
    pixels, scales (F,) radius of the disk of equal area, masks (F, H, W)); frames with no foreground get
    NaN. Angles cannot be read from a mask in general (symmetric shapes), so spin needs ground truth.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise SmraboothError(f"frames must be (F, H, W, 3), got {frames.shape}")
    frames = frames.astype(np.float32)
    background = np.median(border_pixels(frames), axis=1)  # (F, 3)
    masks = np.linalg.norm(frames - background[:, None, None], axis=-1) > threshold
    area = masks.sum((1, 2)).astype(np.float64)
    ys, xs = np.mgrid[: frames.shape[1], : frames.shape[2]]
    with np.errstate(invalid="ignore", divide="ignore"):
        positions = np.stack([(masks * xs).sum((1, 2)) / area, (masks * ys).sum((1, 2)) / area], 1)
    scales = np.where(area > 0, np.sqrt(area / np.pi), np.nan)
    return positions, scales, masks


def _normalise(p: np.ndarray) -> np.ndarray:
    p = p - p.mean(0)
    return p / max(np.sqrt((p**2).sum(1).mean()), 1e-12)


def _grid(lo: float, hi: float, n: int) -> np.ndarray:
    return np.array([lo]) if hi <= lo else np.linspace(lo, hi, n)


@functools.lru_cache(maxsize=16)
def _templates(frames: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Normalised centre paths of every moving family over a grid of its sampler's parameter ranges."""
    t = np.linspace(0.0, 1.0, frames)
    names, paths = [], []
    for family in MOTIONS:
        if family in IN_PLACE_FAMILIES:
            continue
        r = {**_DEFAULT_RANGES, **MOTION_RANGES[family]}
        phase_n = 24 if r["phase"][1] - r["phase"][0] > 1 else 3
        phases = _grid(*r["phase"], phase_n)
        if family == "diagonal":
            phases = (phases[:, None] + np.pi / 4 + np.pi / 2 * np.arange(4)).ravel()
        reverses = (False, True) if family in _REVERSIBLE else (False,)
        for speed, amp, phase, rev in itertools.product(_grid(*r["speed"], 5), _grid(*r["amplitude"], 4), phases,
                                                        reverses):
            q, _, _ = _path(family, phase, speed, amp, rev, t)
            names.append(family)
            paths.append(_normalise(q))
    return tuple(names), np.stack(paths)


def classify_motion(positions, angles=None, scales=None, families: tuple[str, ...] | None = None,
                    rotation_threshold: float = 0.5, scale_threshold: float = 0.25,
                    static_threshold: float = 0.5) -> str:
    """The motion family whose shape is nearest, by this rule:

    1. total rotation |angle_last - angle_first| (unwrapped) > rotation_threshold rad -> "spin";
    2. log(scale_last / scale_first) > scale_threshold -> "grow", < -scale_threshold -> "shrink";
    3. RMS distance of the centre from its mean < static_threshold pixels -> "static";
    4. otherwise the normalised displacement shape, (p - mean p) / RMS radius (so invariant to where the
       path is and how big it is, but not to its direction or timing), is compared with the same
       normalisation of every moving family's path over a grid of its sampling parameters; the family
       of the nearest template (mean squared distance per frame) wins.
    `angles`/`scales` may be None (e.g. tracked positions only): steps 1-2 are skipped. `families`
    restricts step 4 to some families.
    """
    p = _positions(positions, "positions")
    if angles is not None:
        a = np.unwrap(np.asarray(angles, dtype=np.float64))
        if abs(a[-1] - a[0]) > rotation_threshold:
            return "spin"
    if scales is not None:
        s = np.asarray(scales, dtype=np.float64)
        if np.any(s <= 0):
            raise SmraboothError("scales must be positive (sprite radii)")
        ratio = np.log(s[-1] / s[0])
        if ratio > scale_threshold:
            return "grow"
        if ratio < -scale_threshold:
            return "shrink"
    if np.sqrt(((p - p.mean(0)) ** 2).sum(1).mean()) < static_threshold:
        return "static"
    names, paths = _templates(len(p))
    dist = ((paths - _normalise(p)[None]) ** 2).sum(2).mean(1)
    if families is not None:
        unknown = set(families) - set(MOTIONS)
        if unknown:
            raise SmraboothError(f"unknown motion families {sorted(unknown)}: choose from {', '.join(MOTIONS)}")
        dist = np.where(np.isin(np.array(names), list(families)), dist, np.inf)
    return names[int(np.argmin(dist))]
