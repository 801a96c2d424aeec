"""Point tracks for Motion Fidelity.

- `FlowTracker`: built in, chains optical flow (SEA-RAFT in the CLI) frame to frame. A point is marked
  occluded from the first step where the forward-backward check fails (Sundaram et al., ECCV 2010:
  |f + b|^2 > alpha (|f|^2 + |b|^2) + beta) or it leaves the frame; its position keeps following the
  flow (outside the frame: the flow at the nearest border pixel), never clamped to the border, so every
  track has a value at every frame and a point that leaves keeps its direction of travel.
- `load_cotracker`: CoTracker3 (the paper's tracker) from the user's own checkout and checkpoint, or the
  ones torch.hub has cached (`cached_cotracker`). Its code and weights are non-commercial, so smrabooth
  never ships or downloads them. It is queried at exactly the points the reference call
  `predictor(video, grid_size=55)` tracks, with no support grid.

A tracker is a callable `(frames uint8 (T, H, W, 3), queries (N, 2) xy on frame 0) -> (tracks (T, N, 2),
visible (T, N) bool)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .common import ModelLoadError, resolve_device


def sample_at(field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of a (C, H, W) field at (N, 2) xy pixel positions -> (N, C); borders clamp."""
    _, h, w = field.shape
    g = torch.stack([2 * points[:, 0] / max(w - 1, 1) - 1, 2 * points[:, 1] / max(h - 1, 1) - 1], -1)
    out = F.grid_sample(field[None].float(), g[None, None].float(), mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out[0, :, 0].T


class FlowTracker:
    """Chain `flow_fn(image1, image2) -> flow (B, 2, H, W)` (images float (B, 3, H, W) in [0, 1],
    flow in pixels from image1 to image2)."""

    def __init__(self, flow_fn, device=None, alpha: float = 0.01, beta: float = 0.5, progress: bool = False):
        self.flow_fn, self.device = flow_fn, resolve_device(device)
        self.alpha, self.beta, self.progress = alpha, beta, progress

    @torch.no_grad()
    def __call__(self, frames, queries: torch.Tensor):
        frames = torch.as_tensor(np.asarray(frames))
        t, h, w = frames.shape[:3]
        p = queries.to(self.device, torch.float32).clone()
        visible = torch.ones(len(p), dtype=torch.bool, device=self.device)
        tracks, vis = [p.clone()], [visible.clone()]
        for i in tqdm(range(t - 1), desc="tracking", disable=not self.progress, leave=False):
            a = frames[i:i + 1].to(self.device).permute(0, 3, 1, 2).float() / 255
            b = frames[i + 1:i + 2].to(self.device).permute(0, 3, 1, 2).float() / 255
            flows = self.flow_fn(torch.cat([a, b]), torch.cat([b, a])).float()  # forward and backward at once
            f = sample_at(flows[0], p)
            q = p + f
            bwd = sample_at(flows[1], q)
            err = ((f + bwd) ** 2).sum(-1)
            ok = err <= self.alpha * ((f ** 2).sum(-1) + (bwd ** 2).sum(-1)) + self.beta
            inside = (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)
            visible = visible & ok & inside
            p = q
            tracks.append(p.clone())
            vis.append(visible.clone())
        return torch.stack(tracks), torch.stack(vis)


def searaft_flow_fn(model, iters: int | None = None):
    """Adapter from the project's SEA-RAFT (smrabooth.models.searaft.compute_flow) to a flow_fn."""
    from ..models.searaft import compute_flow  # written on another branch; imported only when used

    return lambda image1, image2: compute_flow(model, image1, image2, iters=iters)


class CoTrackerTracker:
    """CoTracker's offline predictor, queried at given points on frame 0.

    The predictor's public call adds a 6x6 "support grid" of extra points whenever explicit queries are
    passed; the reference call (`grid_size=55`, no mask) adds none, and CoTracker tracks points jointly, so
    the support grid changes the tracks. Its sparse-track step is therefore called with
    `add_support_grid=support_grid` (False by default). The queries of `motion_fidelity.grid_queries` map
    back exactly onto the predictor's own grid."""

    def __init__(self, predictor, device, support_grid: bool = False):
        self.predictor, self.device, self.support_grid = predictor, device, support_grid

    @torch.no_grad()
    def __call__(self, frames, queries: torch.Tensor):
        video = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2)[None].float().to(self.device)  # 0..255
        q = torch.cat([torch.zeros(len(queries), 1), queries.float()], -1)[None].to(self.device)  # (t, x, y)
        tracks, visible = self.predictor._compute_sparse_tracks(video, q, add_support_grid=self.support_grid)
        return tracks[0], visible[0].bool()


COTRACKER3_CHECKPOINT = "scaled_offline.pth"  # the offline CoTracker3 the paper's numbers use


def cached_cotracker() -> tuple[Path | None, Path | None]:
    """(checkpoint, code folder) of a CoTracker3 that torch.hub has already fetched on this machine
    (`torch.hub.load("facebookresearch/co-tracker", "cotracker3_offline")` stores both in torch.hub's folder),
    each None when absent. Nothing is downloaded."""
    hub = Path(torch.hub.get_dir())
    checkpoint = hub / "checkpoints" / COTRACKER3_CHECKPOINT
    code = next((p for p in sorted(hub.glob("facebookresearch_co-tracker_*")) if (p / "cotracker").is_dir()), None)
    return (checkpoint if checkpoint.is_file() else None), code


def load_cotracker(checkpoint, repo_dir=None, device=None, support_grid: bool = False) -> CoTrackerTracker:
    """CoTracker3 (offline) from a local clone of facebookresearch/co-tracker (`repo_dir`, or installed as
    `cotracker`) and a local checkpoint (scaled_offline.pth). Anything that is not CoTracker3 (a CoTracker2
    checkpoint, a checkout older than CoTracker3, a damaged file) raises ModelLoadError naming it, so the
    metric is skipped with that reason instead of scored by another tracker."""
    device = resolve_device(device)
    if repo_dir is not None:
        if not Path(repo_dir).is_dir():
            raise ModelLoadError(f"CoTracker checkout {repo_dir} does not exist")
        if str(repo_dir) not in sys.path:
            sys.path.insert(0, str(repo_dir))
    if checkpoint is None or not Path(checkpoint).is_file():
        raise ModelLoadError(f"CoTracker checkpoint {checkpoint} does not exist; pass --cotracker-checkpoint FILE")
    try:
        from cotracker.predictor import CoTrackerPredictor
    except Exception as e:  # noqa: BLE001 - an import of someone else's checkout: any failure means "not usable"
        raise ModelLoadError(f"cannot import cotracker ({e}); clone facebookresearch/co-tracker and pass "
                             "--cotracker-repo DIR") from None
    name = Path(checkpoint).name
    try:
        predictor = CoTrackerPredictor(checkpoint=str(checkpoint), offline=True, window_len=60)
    except TypeError:  # a predictor without `offline`: a checkout from before CoTracker3
        raise ModelLoadError(f"the cotracker code found ({_where(CoTrackerPredictor)}) predates CoTracker3; use a "
                             "current clone of facebookresearch/co-tracker (--cotracker-repo DIR)") from None
    except Exception as e:  # noqa: BLE001 - the checkout's loader raises RuntimeError, KeyError, pickle errors ...
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{name} is not a CoTracker3 offline checkpoint (e.g. a CoTracker2 one?): "
                             f"{type(e).__name__}: {first}; pass CoTracker3's {COTRACKER3_CHECKPOINT}") from None
    return CoTrackerTracker(predictor.to(device).eval(), device, support_grid)


def _where(obj) -> str:
    import inspect

    try:
        return str(Path(inspect.getfile(obj)).parent.parent)
    except (TypeError, OSError):
        return "cotracker"
