"""Motion Fidelity (Yatim et al., "Space-Time Diffusion Features for Zero-Shot Text-Driven Motion
Transfer", CVPR 2024), the motion metric SMRABooth reports.

Tracks of a query grid on frame 0 of the generated video (n tracks) and of the reference video (m tracks)
are compared by the tracklet correlation

    corr(a, b) = 1/(T-1) sum_t cos(a_{t+1} - a_t, b_{t+1} - b_t)

Variants (x100, the scale the papers print):
- "released" (default): the score of the released diffusion-motion-transfer script, which the paper's
  numbers follow: the similarity matrix generated x reference minus the identity, for each generated track
  its best reference track, averaged over generated tracks. The identity subtraction means a generated track
  never counts its own-index reference track at full weight, so identical videos score below 100.
- "two-sided": Eq. 5 of the paper as written (generated-to-reference and reference-to-generated best
  matches, no identity), halved so identical motion scores 100 and reversed motion -100.
- "reference-to-generated": the released formula with the roles swapped (for each reference track its
  best generated track).

A zero-length step (a static point) has no direction: its cosine counts as 0 instead of the NaN the
released code produces.

The identity of the released formula pairs a generated track with the reference track of the same query
point (both videos are tracked on the same grid). When tracks are dropped (`drop_occluded`), each track
keeps the index of its query point, so the identity still removes exactly the pairs of one query point.

Length of the reference (`length`): the paper compares 49 generated frames with motion clips read as their
first 49 frames at the file's own rate (the authors' training reads clips that way, with no resampling), so
"first" (default) compares the generated video with the reference's first frames; a reference shorter
than the generated video is an error. "resample" spreads the reference uniformly over the generated
length instead; "error" demands equal lengths.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import SmraboothError

VARIANTS = ("released", "two-sided", "reference-to-generated")
LENGTH_RULES = ("first", "resample", "error")
# CoTracker's predictor lays its query grid in the model's input resolution (H, W) and maps the tracks back
COTRACKER_RESOLUTION = (384, 512)


def grid_queries(height: int, width: int, size: int = 55, box: tuple[float, float, float, float] | None = None):
    """(N, 2) xy query points in pixels of an (height, width) video: the points CoTracker's predictor tracks
    for `grid_size=size` (a size x size grid with margin 512/64 in its 384x512 input, mapped to the video by
    (W-1)/511, (H-1)/383), optionally kept inside a box (x0, y0, x1, y1) in pixels of frame 0."""
    mh, mw = COTRACKER_RESOLUTION
    margin = mw / 64
    ys = np.linspace(margin, mh - margin, size) * (height - 1) / (mh - 1)
    xs = np.linspace(margin, mw - margin, size) * (width - 1) / (mw - 1)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)
    if box is not None:
        x0, y0, x1, y1 = box
        keep = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
        if not keep.any():
            raise SmraboothError(f"the motion box {box} contains no grid point; check it is x0,y0,x1,y1 in pixels")
        pts = pts[keep]
    return torch.from_numpy(pts)


def unit_steps(tracks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(N, T, 2) positions -> (N, T-1, 2) unit displacements; zero-length steps stay zero vectors."""
    d = tracks[:, 1:] - tracks[:, :-1]
    n = d.norm(dim=-1, keepdim=True)
    return torch.where(n > eps, d / n.clamp(min=eps), torch.zeros_like(d))


def tracklet_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, T, 2), (M, T, 2) -> (N, M): mean over time of the cosine of per-step displacements."""
    if a.shape[1] != b.shape[1]:
        raise SmraboothError(f"motion fidelity needs tracks of equal length, got {a.shape[1]} and {b.shape[1]} frames")
    da, db = unit_steps(a.double()), unit_steps(b.double())
    return torch.einsum("ntc,mtc->nm", da, db) / da.shape[1]


def motion_fidelity(generated: torch.Tensor, reference: torch.Tensor, variant: str = "released",
                    generated_ids: torch.Tensor | None = None, reference_ids: torch.Tensor | None = None) -> float:
    """Tracks as (N, T, 2) xy positions in pixels; returns the score x100. `generated_ids`, `reference_ids`:
    the query point of each track (default: its row), which the released formula's identity pairs."""
    if variant not in VARIANTS:
        raise SmraboothError(f"motion fidelity variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if generated.shape[1] < 2:
        raise SmraboothError("motion fidelity needs videos of at least 2 frames")
    if variant == "two-sided":
        c = tracklet_correlation(generated, reference)  # (n_gen, m_ref)
        score = 0.5 * (c.max(dim=1).values.mean() + c.max(dim=0).values.mean())
    else:
        gen_ids = torch.arange(len(generated)) if generated_ids is None else torch.as_tensor(generated_ids)
        ref_ids = torch.arange(len(reference)) if reference_ids is None else torch.as_tensor(reference_ids)
        if len(gen_ids) != len(generated) or len(ref_ids) != len(reference):
            raise SmraboothError("motion fidelity: one query point id per track is needed")
        rows, cols, row_ids, col_ids = ((generated, reference, gen_ids, ref_ids) if variant == "released"
                                        else (reference, generated, ref_ids, gen_ids))
        c = tracklet_correlation(rows, cols)
        # the released code subtracts a square identity: the pairs of one query point (with equal track
        # counts and no track dropped, eye(n)); pairs by query point, so dropping a track shifts nothing
        same_point = row_ids.reshape(-1, 1) == col_ids.reshape(1, -1)
        c = c - same_point.to(c.dtype)
        score = c.max(dim=1).values.mean()
    return float(score) * 100


def match_length(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """Uniformly resample a reference video to num_frames frames (nearest frame)."""
    idx = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
    return frames[idx]


def rescale_tracks(tracks: torch.Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> torch.Tensor:
    """Express tracks of a (H, W) video in the pixel grid of another size (videos of different sizes)."""
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    return tracks * torch.tensor([sx, sy], dtype=tracks.dtype)


def _visible_throughout(visible, count: int) -> torch.Tensor:
    """Indices of the tracks visible at every frame ((N, T) bool, or None: all)."""
    if visible is None:
        return torch.arange(count)
    keep = torch.nonzero(visible.all(dim=1)).flatten()
    if not len(keep):
        raise SmraboothError("motion fidelity: every track is occluded at some frame; rerun without --mf-drop-occluded")
    return keep


def match_reference_length(ref_frames: np.ndarray, num_frames: int, length: str = "first") -> np.ndarray:
    """The reference frames compared with a generated video of `num_frames` frames, under the length rule
    `length` (module docstring)."""
    if length not in LENGTH_RULES:
        raise SmraboothError(f"motion fidelity length rule must be one of {', '.join(LENGTH_RULES)}, got {length!r}")
    if len(ref_frames) == num_frames:
        return ref_frames
    if length == "resample":
        return match_length(ref_frames, num_frames)
    if length == "first" and len(ref_frames) > num_frames:
        return ref_frames[:num_frames]
    if length == "first":
        raise SmraboothError(f"motion fidelity compares the generated video's {num_frames} frames with the reference's "
                             f"first {num_frames}, but the reference has only {len(ref_frames)}; give the full "
                             "reference clip, or pass --mf-length resample to spread it over the generated length")
    raise SmraboothError(f"motion fidelity compares videos frame by frame, but the generated video has "
                         f"{num_frames} frames and the reference {len(ref_frames)}; pass --mf-length first (the "
                         "reference's first frames, the paper's setup) or resample, or trim the videos")


def motion_fidelity_videos(gen_frames: np.ndarray, ref_frames: np.ndarray, tracker, grid_size: int = 55,
                           box=None, variant: str = "released", length: str = "first",
                           drop_occluded: bool = False) -> float:
    """Track a grid on frame 0 of both videos with `tracker(frames, queries) -> (tracks (T,N,2), visible (T,N))`
    and score them. `length`: how a reference of another frame count is matched (LENGTH_RULES).
    `drop_occluded`: leave out the tracks of each video that are occluded at some frame, keeping the query
    point of every track for the identity."""
    ref_frames = match_reference_length(ref_frames, len(gen_frames), length)
    gh, gw = gen_frames.shape[1:3]
    rh, rw = ref_frames.shape[1:3]
    q_gen = grid_queries(gh, gw, grid_size, box)
    # the reference grid covers the same relative area (the box is given in generated-video pixels)
    q_ref = grid_queries(rh, rw, grid_size, None if box is None else
                         (box[0] * rw / gw, box[1] * rh / gh, box[2] * rw / gw, box[3] * rh / gh))
    tg, vg = tracker(gen_frames, q_gen)
    tr, vr = tracker(ref_frames, q_ref)
    tg, tr = tg.transpose(0, 1).float().cpu(), tr.transpose(0, 1).float().cpu()  # (N, T, 2)
    gen_ids, ref_ids = torch.arange(len(tg)), torch.arange(len(tr))
    if drop_occluded:
        gen_ids = _visible_throughout(None if vg is None else vg.transpose(0, 1).cpu(), len(tg))
        ref_ids = _visible_throughout(None if vr is None else vr.transpose(0, 1).cpu(), len(tr))
    tr = rescale_tracks(tr, (rh, rw), (gh, gw))
    return motion_fidelity(tg[gen_ids], tr[ref_ids], variant, gen_ids, ref_ids)
