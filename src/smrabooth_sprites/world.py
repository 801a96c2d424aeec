"""SMRA-Sprites: a procedural video world (one sprite on a plain background) with exact ground truth.

No pretrained video model can be downloaded everywhere, so small Wan-architecture models are trained
in this controlled world and subject/motion customization is measured against the truth it records.

Conventions (all exact with respect to the rasteriser below):
- Pixel (row r, column c) has its centre at (x, y) = (c, r); x to the right, y down.
- Normalised coordinates n in [0, 1] cover the image edge to edge: pixel x = n * size - 0.5.
- A sprite lives in its canonical frame u in the unit disk (every shape fits in radius 0.95, so it
  stays inside the disk under any rotation). Frame k places it with centre p_k (pixels), radius
  s_k (pixels) and angle a_k (radians, clockwise on screen because y points down):
      x = p_k + s_k R(a_k) u,        u = R(-a_k) (x - p_k) / s_k.
  Each pixel centre is inverse-mapped into u; the shape decides the mask, the texture (defined in
  u, so it turns and scales with the sprite) decides the colour. No anti-aliasing: the mask is
  exactly the set of pixels whose colour is not the background's.
- Forward flow of a sprite pixel from frame k to k+1 is p_{k+1} + s_{k+1} R(a_{k+1}) u - x, with u
  that pixel's canonical coordinate: exact for the analytic transform. The background is static
  (flow 0).
- Each shape is centred on its area centroid, so `positions` is the mask centroid up to
  rasterisation error.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from smrabooth.errors import SmraboothError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "heart", "cross", "ring",
                           "hexagon", "crescent")

# Well separated in RGB (the closest pair, red/orange, is still > 90 apart).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 220, 30),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
    "orange": (250, 130, 0),
    "purple": (130, 40, 170),
    "pink": (250, 140, 200),
    "cyan": (40, 210, 230),
    "gray": (128, 128, 128),
}

TEXTURES: tuple[str, ...] = ("solid", "striped", "checked", "dotted")

TRAIN_MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "diagonal", "circle", "bounce", "zigzag", "grow",
                                  "shrink", "spin")
HELDOUT_MOTIONS: tuple[str, ...] = ("figure-eight", "spiral")
MOTIONS: tuple[str, ...] = TRAIN_MOTIONS + HELDOUT_MOTIONS

_MOTION_WORDS = {
    "left": "moving left", "right": "moving right", "up": "moving up", "down": "moving down",
    "diagonal": "moving diagonally", "circle": "moving in a circle", "bounce": "bouncing",
    "zigzag": "moving in a zigzag", "grow": "growing", "shrink": "shrinking", "spin": "spinning",
    "figure-eight": "moving in a figure eight", "spiral": "moving in a spiral",
}
_LINE_DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
SPLITS = ("train", "heldout")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class SpriteDesign:
    """The subject: a shape, its colour, a texture and the texture's second colour (= colour if solid)."""

    shape: str
    color: str
    texture: str
    texture_color: str

    def __post_init__(self):
        for value, allowed, what in ((self.shape, SHAPES, "shape"), (self.color, COLORS, "color"),
                                     (self.texture, TEXTURES, "texture"), (self.texture_color, COLORS,
                                                                           "texture_color")):
            if value not in allowed:
                raise SmraboothError(f"unknown sprite {what} {value!r}: choose one of {', '.join(allowed)}")
        if self.texture != "solid" and self.texture_color == self.color:
            raise SmraboothError(f"a {self.texture} sprite needs a texture_color different from its color "
                                 f"({self.color})")

    @property
    def colors(self) -> set[str]:
        return {self.color, self.texture_color}

    def words(self, omit: frozenset[str] = frozenset()) -> str:
        """'red striped star' ('red star' when solid). The texture colour is not named: it is a detail
        only the customized subject token V* can carry. `omit` may hold 'color' and 'texture'."""
        color = "" if "color" in omit else f"{self.color} "
        texture = "" if self.texture == "solid" or "texture" in omit else f"{self.texture} "
        return f"{color}{texture}{self.shape}"


@dataclass(frozen=True)
class MotionSpec:
    """The motion: a trajectory family and its parameters (normalised units; see `trajectory`).

    start: sprite centre at the first frame, normalised (x, y). size: sprite radius at the first
    frame as a fraction of the image size. speed: how much of the family's path the clip covers
    (distance for straight lines, turns for circle/spin/spiral/figure-eight, bounces or zigzags,
    log scale change for grow/shrink). phase: where on the path it starts (an angle; for diagonal,
    the direction of travel). amplitude: radius or height of curved paths. reverse: the other way
    round (counter-clockwise, or drifting left for bounce/zigzag).
    """

    family: str
    phase: float
    speed: float
    start: tuple[float, float]
    size: float
    amplitude: float = 0.0
    reverse: bool = False

    def __post_init__(self):
        if self.family not in MOTIONS:
            raise SmraboothError(f"unknown motion family {self.family!r}: choose one of {', '.join(MOTIONS)}")
        if not self.size > 0:
            raise SmraboothError(f"motion size must be > 0 (a fraction of the image size), got {self.size}")

    def words(self) -> str:
        return _MOTION_WORDS[self.family]


@dataclass
class SpriteClip:
    frames: np.ndarray  # uint8 (F, H, W, 3)
    masks: np.ndarray  # bool (F, H, W)
    positions: np.ndarray  # float32 (F, 2) sprite centre (x, y) in pixels
    angles: np.ndarray  # float32 (F,) radians, clockwise on screen
    scales: np.ndarray  # float32 (F,) sprite radius in pixels
    flow: np.ndarray  # float32 (F-1, 2, H, W) forward flow k -> k+1, channel 0 = x, 1 = y
    caption: str
    design: SpriteDesign
    motion: MotionSpec
    background: str


HELDOUT_SUBJECTS: tuple[SpriteDesign, ...] = (
    SpriteDesign("heart", "red", "checked", "white"),
    SpriteDesign("star", "blue", "dotted", "yellow"),
    SpriteDesign("hexagon", "green", "striped", "black"),
    SpriteDesign("crescent", "purple", "checked", "orange"),
)
# split="train" excludes every (shape, color, texture) of a held-out subject, whatever its texture
# colour, so a held-out subject is never even approximately seen; each word is still seen alone.
_HELDOUT_KEYS = {(d.shape, d.color, d.texture) for d in HELDOUT_SUBJECTS}


def is_heldout_design(design: SpriteDesign) -> bool:
    return (design.shape, design.color, design.texture) in _HELDOUT_KEYS


# ---------------------------------------------------------------------------------------------- shapes


def _polygon_inside(x, y, vertices) -> np.ndarray:
    """Even-odd rule, vectorised over points."""
    inside = np.zeros(np.shape(x), dtype=bool)
    n = len(vertices)
    for i in range(n):
        (xi, yi), (xj, yj) = vertices[i], vertices[i - 1]
        crosses = (yi > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (xj - xi) * (y - yi) / (yj - yi) + xi
        inside ^= crosses & (x < x_at)
    return inside


def _regular(n: int, radius: float = 1.0, start: float = -np.pi / 2, inner: float | None = None):
    """Vertices of a regular n-gon (or n-pointed star with `inner` radius), first vertex pointing up."""
    if inner is None:
        a = start + 2 * np.pi * np.arange(n) / n
        return list(zip(radius * np.cos(a), radius * np.sin(a)))
    a = start + np.pi * np.arange(2 * n) / n
    r = np.where(np.arange(2 * n) % 2 == 0, radius, inner)
    return list(zip(r * np.cos(a), r * np.sin(a)))


_TRIANGLE = _regular(3)
_STAR = _regular(5, inner=0.42)
_HEXAGON = _regular(6, start=0.0)


def _raw_shape(shape: str, x, y) -> np.ndarray:
    """Shapes in their own drawing coordinates (y down); normalised by `_shape_frame`."""
    if shape == "circle":
        return x * x + y * y <= 1.0
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) <= 1.0
    if shape == "triangle":
        return _polygon_inside(x, y, _TRIANGLE)
    if shape == "star":
        return _polygon_inside(x, y, _STAR)
    if shape == "diamond":
        return np.abs(x) / 0.7 + np.abs(y) <= 1.0
    if shape == "heart":  # the classic sextic, lobes up: (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 with y up
        yy = -y
        return (x * x + yy * yy - 1.0) ** 3 - x * x * yy**3 <= 0.0
    if shape == "cross":
        ax, ay = np.abs(x), np.abs(y)
        return ((ax <= 0.33) & (ay <= 1.0)) | ((ax <= 1.0) & (ay <= 0.33))
    if shape == "ring":
        r2 = x * x + y * y
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if shape == "hexagon":
        return _polygon_inside(x, y, _HEXAGON)
    if shape == "crescent":
        return (x * x + y * y <= 1.0) & ((x - 0.45) ** 2 + y * y > 0.8**2)
    raise SmraboothError(f"unknown shape {shape!r}: choose one of {', '.join(SHAPES)}")


SHAPE_RADIUS = 0.95  # every shape's farthest point from its centroid, in canonical units


@functools.cache
def _shape_frame(shape: str) -> tuple[float, float, float]:
    """(centroid x, centroid y, factor) so that raw = centroid + factor * u puts the area centroid at
    u = 0 and the farthest point at |u| = SHAPE_RADIUS. Computed once on a fine grid; these are just
    the constants that define each canonical shape."""
    g = np.linspace(-1.3, 1.3, 801)
    x, y = np.meshgrid(g, g)
    inside = _raw_shape(shape, x, y)
    cx, cy = float(x[inside].mean()), float(y[inside].mean())
    rmax = float(np.sqrt((x[inside] - cx) ** 2 + (y[inside] - cy) ** 2).max()) + (g[1] - g[0])
    return cx, cy, rmax / SHAPE_RADIUS


def shape_mask(shape: str, ux, uy) -> np.ndarray:
    """Membership of canonical points (u in the unit disk, y down)."""
    cx, cy, f = _shape_frame(shape)
    return _raw_shape(shape, cx + f * np.asarray(ux), cy + f * np.asarray(uy))


def texture_mask(texture: str, ux, uy) -> np.ndarray:
    """True where the texture colour shows (canonical coordinates)."""
    ux, uy = np.asarray(ux), np.asarray(uy)
    if texture == "solid":
        return np.zeros(ux.shape, dtype=bool)
    if texture == "striped":  # vertical stripes 0.3 wide
        return np.floor(ux / 0.3 + 0.5).astype(np.int64) % 2 == 1
    if texture == "checked":
        return (np.floor(ux / 0.35).astype(np.int64) + np.floor(uy / 0.35).astype(np.int64)) % 2 == 1
    if texture == "dotted":  # dots of radius 0.15 on a 0.5 grid
        dx = ux - 0.5 * np.round(ux / 0.5)
        dy = uy - 0.5 * np.round(uy / 0.5)
        return dx * dx + dy * dy <= 0.15**2
    raise SmraboothError(f"unknown texture {texture!r}: choose one of {', '.join(TEXTURES)}")


# ------------------------------------------------------------------------------------------ rasteriser


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _canonical(size: int, position, radius: float, angle: float):
    """Canonical coordinates of the pixel centres in the sprite's bounding box.

    Returns (rows slice, cols slice, ux, uy); pixels outside the box are outside the sprite."""
    px, py = float(position[0]), float(position[1])
    r = float(radius)
    r0, r1 = max(0, int(np.floor(py - r)) - 1), min(size, int(np.ceil(py + r)) + 2)
    c0, c1 = max(0, int(np.floor(px - r)) - 1), min(size, int(np.ceil(px + r)) + 2)
    ys, xs = np.mgrid[r0:max(r0, r1), c0:max(c0, c1)].astype(np.float64)
    dx, dy = xs - px, ys - py
    c, s = np.cos(angle), np.sin(angle)
    # u = R(-a) (x - p) / r
    ux = (c * dx + s * dy) / r
    uy = (-s * dx + c * dy) / r
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1)), ux, uy


def _draw(design: SpriteDesign, background: str, size: int, position, radius: float, angle: float):
    """(image, mask, (rows, cols, ux, uy, inside)) for one placement of the sprite."""
    _check_background(design, background)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = COLORS[background]
    mask = np.zeros((size, size), dtype=bool)
    rows, cols, ux, uy = _canonical(size, position, radius, angle)
    inside = shape_mask(design.shape, ux, uy)
    textured = texture_mask(design.texture, ux, uy)
    patch = image[rows, cols]
    patch[inside & ~textured] = COLORS[design.color]
    patch[inside & textured] = COLORS[design.texture_color]
    mask[rows, cols] = inside
    return image, mask, (rows, cols, ux, uy, inside)


def _check_background(design: SpriteDesign, background: str) -> None:
    if background not in COLORS:
        raise SmraboothError(f"unknown background {background!r}: choose one of {', '.join(COLORS)}")
    if background in design.colors:
        raise SmraboothError(f"background {background} is one of the sprite's colours ({design.words()}, "
                             f"texture {design.texture_color}): choose another background")


def render_image(design: SpriteDesign, background: str, size: int = 128, position=None, scale=None,
                 angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A still of the subject: (image uint8 (size, size, 3), mask bool (size, size)).

    position: sprite centre (x, y) in pixels (default: the image centre); scale: sprite radius in
    pixels (default 0.3 * size); angle: radians, clockwise on screen."""
    position = ((size - 1) / 2, (size - 1) / 2) if position is None else position
    scale = 0.3 * size if scale is None else scale
    image, mask, _ = _draw(design, background, size, position, scale, angle)
    return image, mask


# Sprite radius of stills (fractions of the image): from the clips' sprites (0.1-0.15, `MOTION_RANGES`)
# up to the subject photos' (0.22-0.36, `folders.write_subject_folder`), so a DiT pretrained on stills
# has drawn every size a subject LoRA trains on.
STILL_RADIUS = (0.1, 0.36)


def random_placement(rng: np.random.Generator, size: int, radius: tuple[float, float], max_angle: float):
    """(position (x, y) px, radius px, angle rad) of a sprite that fits in the image whatever its shape
    (radius bound): radius drawn from `radius` (fractions of the image), tilt within +-max_angle."""
    r = float(rng.uniform(*radius)) * size
    lo, hi = r + 1, size - 2 - r
    position = (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))
    return position, r, float(rng.uniform(-max_angle, max_angle))


def still_caption(design: SpriteDesign, background: str | None = None, omit: frozenset[str] = frozenset()) -> str:
    """'a picture of a red striped star on a blue background' (no background when None): the form of the
    subject captions ('a picture of V* star'). `omit`: see `caption_for`."""
    words = design.words(omit)
    where = f" on {_article(background)} {background} background" if background else ""
    return f"a picture of {_article(words)} {words}{where}"


def sample_still(seed: int, split: str = "train", size: int = 128,
                 partial_captions: float = 0.0) -> tuple[np.ndarray, np.ndarray, str]:
    """A random still of the split, deterministic by seed: (image uint8 (size, size, 3), mask bool
    (size, size), caption). Radius in `STILL_RADIUS`, tilt up to 0.6 rad; half the captions name the
    background, half do not (as the subject captions). `partial_captions`: see `caption_omissions`."""
    rng = np.random.default_rng(seed)
    design = sample_design(rng, split)
    background = sample_background(rng, design)
    position, radius, angle = random_placement(rng, size, STILL_RADIUS, 0.6)
    image, mask = render_image(design, background, size, position, radius, angle)
    omit = caption_omissions(seed, partial_captions) - {"motion"}
    return image, mask, still_caption(design, background if rng.random() < 0.5 else None, omit)


# -------------------------------------------------------------------------------------- trajectories


def _triangle_wave(s):
    """1 at integers, -1 at half-integers, linear between."""
    return 1.0 - 4.0 * np.abs(s - np.floor(s + 0.5))


def _path(family: str, phase: float, speed: float, amplitude: float, reverse: bool, t: np.ndarray):
    """(offsets (T, 2) normalised, angles (T,), log scale (T,)) of a family at times t in [0, 1]."""
    sign = -1.0 if reverse else 1.0
    q = np.zeros((len(t), 2))
    angle = np.zeros(len(t))
    log_scale = np.zeros(len(t))
    if family in _LINE_DIRECTIONS:
        q = speed * t[:, None] * np.asarray(_LINE_DIRECTIONS[family])
    elif family == "diagonal":
        q = speed * t[:, None] * np.array([np.cos(phase), np.sin(phase)])
    elif family == "circle":
        a = phase + sign * 2 * np.pi * speed * t
        q = amplitude * np.stack([np.cos(a), np.sin(a)], 1)
    elif family == "bounce":  # drifts sideways, hops up from a floor (y down: up is negative)
        q = np.stack([sign * 0.3 * t, -amplitude * np.abs(np.sin(np.pi * speed * t + phase))], 1)
    elif family == "zigzag":
        q = np.stack([sign * 0.5 * t, amplitude * _triangle_wave(speed * t + phase / (2 * np.pi))], 1)
    elif family == "grow":
        log_scale = speed * t
    elif family == "shrink":
        log_scale = -speed * t
    elif family == "spin":
        angle = phase + sign * 2 * np.pi * speed * t
    elif family == "figure-eight":
        a = phase + sign * 2 * np.pi * speed * t
        q = amplitude * np.stack([np.sin(a), 0.5 * np.sin(2 * a)], 1)
    elif family == "spiral":
        a = phase + sign * 2 * np.pi * speed * t
        q = amplitude * (0.15 + 0.85 * t)[:, None] * np.stack([np.cos(a), np.sin(a)], 1)
    else:
        raise SmraboothError(f"unknown motion family {family!r}: choose one of {', '.join(MOTIONS)}")
    return q, angle, log_scale


def trajectory(motion: MotionSpec, frames: int, size: int):
    """Per-frame (positions (F, 2) pixels, angles (F,), radii (F,) pixels). Time runs 0..1 over the
    clip whatever the frame count, so 49 frames sample the same motion as 17, more finely."""
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    q, angle, log_scale = _path(motion.family, motion.phase, motion.speed, motion.amplitude, motion.reverse, t)
    norm = np.asarray(motion.start, dtype=np.float64) + q - q[0]
    positions = norm * size - 0.5
    radii = motion.size * size * np.exp(log_scale)
    return positions, angle, radii


# ------------------------------------------------------------------------------------------ rendering


def caption_for(design: SpriteDesign, motion: MotionSpec, background: str,
                omit: frozenset[str] = frozenset()) -> str:
    """'a red striped star moving in a circle on a blue background'. `omit` may hold 'color', 'texture'
    and 'motion': 'a star on a blue background'."""
    words = design.words(omit)
    moving = "" if "motion" in omit else f" {motion.words()}"
    return f"{_article(words)} {words}{moving} on {_article(background)} {background} background"


CAPTION_PARTS = ("color", "texture", "motion")


def caption_omissions(seed: int, p: float) -> frozenset[str]:
    """Which of `CAPTION_PARTS` a partial caption leaves out: each independently with probability p.

    The method's prompts name the subject by its class noun and the motion not at all ('a V* heart
    doing S* on a blue background'); a model pretrained only on full captions draws almost nothing
    for them. The draw has its own generator, so the clip or still of a seed is the same for any p
    (p = 0: the full caption)."""
    if not p:
        return frozenset()
    draws = np.random.default_rng((seed, 0x0C4)).random(len(CAPTION_PARTS))
    return frozenset(part for part, u in zip(CAPTION_PARTS, draws) if u < p)


def render_clip(design: SpriteDesign, motion: MotionSpec, background: str, frames: int = 17,
                size: int = 128, omit: frozenset[str] = frozenset()) -> SpriteClip:
    """The clip's frames with exact masks, positions and flow; its caption leaves out `omit` (`caption_for`)."""
    if frames < 2:
        raise SmraboothError(f"a clip needs at least 2 frames, got {frames}")
    if size < 8:
        raise SmraboothError(f"image size must be at least 8 pixels, got {size}")
    positions, angles, radii = trajectory(motion, frames, size)
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    masks = np.zeros((frames, size, size), dtype=bool)
    flow = np.zeros((frames - 1, 2, size, size), dtype=np.float32)
    for k in range(frames):
        video[k], masks[k], (rows, cols, ux, uy, inside) = _draw(design, background, size, positions[k],
                                                                 radii[k], angles[k])
        if k + 1 < frames:
            # forward-map each sprite pixel's canonical point with the next frame's transform
            u = np.stack([ux[inside], uy[inside]])
            nxt = positions[k + 1][:, None] + radii[k + 1] * (_rotation(angles[k + 1]) @ u)
            ys, xs = np.nonzero(inside)
            ys, xs = ys + rows.start, xs + cols.start
            flow[k, 0, ys, xs] = nxt[0] - xs
            flow[k, 1, ys, xs] = nxt[1] - ys
    return SpriteClip(video, masks, positions.astype(np.float32), angles.astype(np.float32),
                      radii.astype(np.float32), flow, caption_for(design, motion, background, omit), design, motion,
                      background)


# ----------------------------------------------------------------------------------------- sampling


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise SmraboothError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")


def sample_design(rng: np.random.Generator, split: str = "train") -> SpriteDesign:
    _check_split(split)
    if split == "heldout":
        return HELDOUT_SUBJECTS[int(rng.integers(len(HELDOUT_SUBJECTS)))]
    names = list(COLORS)
    while True:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        color = names[int(rng.integers(len(names)))]
        texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
        others = [c for c in names if c != color]
        texture_color = color if texture == "solid" else others[int(rng.integers(len(others)))]
        design = SpriteDesign(shape, color, texture, texture_color)
        if not is_heldout_design(design):
            return design


def sample_background(rng: np.random.Generator, design: SpriteDesign) -> str:
    """Any colour that is not one of the sprite's."""
    allowed = [c for c in COLORS if c not in design.colors]
    return allowed[int(rng.integers(len(allowed)))]


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


# Parameter ranges of the samplers (also the classifier's template grid, see analysis.py).
_DEFAULT_RANGES = {"size": (0.1, 0.15), "speed": (0.0, 0.0), "amplitude": (0.0, 0.0), "phase": (0.0, 0.0)}
MOTION_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    **{f: {"speed": (0.4, 0.6)} for f in _LINE_DIRECTIONS},
    "diagonal": {"speed": (0.4, 0.6), "phase": (-0.12, 0.12)},  # + pi/4 + k pi/2
    "circle": {"amplitude": (0.18, 0.25), "speed": (0.8, 1.0), "phase": (0.0, 2 * np.pi)},
    "bounce": {"amplitude": (0.25, 0.4), "speed": (1.5, 2.5), "phase": (0.0, 0.3)},
    "zigzag": {"amplitude": (0.08, 0.14), "speed": (1.5, 2.5), "phase": (0.0, 2 * np.pi)},
    "grow": {"size": (0.06, 0.08), "speed": (0.8, 1.1)},
    "shrink": {"size": (0.16, 0.22), "speed": (0.8, 1.1)},
    "spin": {"size": (0.12, 0.2), "speed": (0.5, 1.0), "phase": (0.0, 2 * np.pi)},
    "figure-eight": {"amplitude": (0.2, 0.26), "speed": (0.85, 1.0), "phase": (0.0, 2 * np.pi)},
    "spiral": {"amplitude": (0.22, 0.28), "speed": (1.25, 1.75), "phase": (0.0, 2 * np.pi)},
}


def sample_motion(rng: np.random.Generator, split: str = "train", family: str | None = None,
                  sprite_scale: float = 1.0) -> MotionSpec:
    """Random parameters of a family (a random family of the split when `family` is None). The start is
    drawn so the sprite stays inside the frame (2% margin) for the whole clip.

    `sprite_scale` multiplies the sprite's radius; where the scaled sprite could not travel the path
    inside the frame, the radius is cut to the largest that can. The same random numbers are drawn
    whatever the scale, so scale 1 gives exactly the default clips."""
    _check_split(split)
    families = TRAIN_MOTIONS if split == "train" else HELDOUT_MOTIONS
    if family is None:
        family = families[int(rng.integers(len(families)))]
    elif family not in families:
        raise SmraboothError(f"motion family {family!r} is not in the {split} split ({', '.join(families)})")
    ranges = {**_DEFAULT_RANGES, **MOTION_RANGES[family]}
    reverse = bool(rng.integers(2))
    size, speed, amplitude, phase = (_u(rng, *ranges[k]) for k in ("size", "speed", "amplitude", "phase"))
    if family == "diagonal":  # one of the four diagonals, a little off
        phase += np.pi / 4 + np.pi / 2 * int(rng.integers(4))
    t = np.linspace(0.0, 1.0, 257)
    q, _, log_scale = _path(family, phase, speed, amplitude, reverse, t)
    d = q - q[0]
    growth = float(np.exp(log_scale).max())
    if sprite_scale != 1.0:
        room = (1.0 - float((d.max(0) - d.min(0)).max())) / 2 - 0.02  # largest radius the path leaves
        size = min(size * sprite_scale, 0.999 * room / growth)
    r = size * growth
    margin = 0.02 + r
    lo, hi = margin - d.min(0), 1.0 - margin - d.max(0)
    if np.any(lo > hi):  # cannot happen with the ranges above; guards edits to them
        raise SmraboothError(f"{family} motion does not fit in the frame (size {size:.3f})")
    start = (_u(rng, lo[0], hi[0]), _u(rng, lo[1], hi[1]))
    return MotionSpec(family, float(phase), float(speed), start, float(size), float(amplitude), reverse)


def sample_clip(seed: int, split: str = "train", frames: int = 17, size: int = 128,
                sprite_scale: float = 1.0, partial_captions: float = 0.0) -> SpriteClip:
    """A random design, background and motion of the split, deterministic by seed (`sprite_scale`: see
    `sample_motion`; `partial_captions`: see `caption_omissions`)."""
    rng = np.random.default_rng(seed)
    design = sample_design(rng, split)
    background = sample_background(rng, design)
    motion = sample_motion(rng, split, sprite_scale=sprite_scale)
    return render_clip(design, motion, background, frames, size, caption_omissions(seed, partial_captions))


def sample_family_clips(family: str, n: int, seed: int = 0, frames: int = 17, size: int = 128,
                        sprite_scale: float = 1.0) -> list[SpriteClip]:
    """n clips of one motion family with random train-split designs and backgrounds (a motion-training set;
    a held-out family still gets train-split designs, so only the motion is new). `sprite_scale`: see
    `sample_motion` (the same designs, backgrounds and path shapes at any scale)."""
    if family not in MOTIONS:
        raise SmraboothError(f"unknown motion family {family!r}: choose one of {', '.join(MOTIONS)}")
    if n < 1:
        raise SmraboothError(f"the number of clips must be at least 1, got {n}")
    split = "heldout" if family in HELDOUT_MOTIONS else "train"
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        design = sample_design(rng, "train")
        background = sample_background(rng, design)
        motion = sample_motion(rng, split, family, sprite_scale=sprite_scale)
        clips.append(render_clip(design, motion, background, frames, size))
    return clips


# ---------------------------------------------------------------------------------- vocabulary


def _vocabulary() -> tuple[str, ...]:
    words = {"a", "an", "on", "background", "picture", "of", "sprite", "doing", "the", "motion", "V*", "S*"}
    words |= set(SHAPES) | set(COLORS) | {t for t in TEXTURES if t != "solid"}
    for phrase in _MOTION_WORDS.values():
        words |= set(phrase.split())
    return tuple(sorted(words))


VOCABULARY: tuple[str, ...] = _vocabulary()
