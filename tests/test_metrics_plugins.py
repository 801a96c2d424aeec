"""The optional plug-ins (CoTracker3, SEA-RAFT, pyiqa) wired through stand-in modules with known outputs:
checks the calling conventions and the aggregation, not the real networks (not available here)."""

import sys
import types

import numpy as np
import pytest
import torch

from smrabooth.metrics.common import ModelLoadError
from smrabooth.metrics.imaging import imaging_quality, load_imaging
from smrabooth.metrics.runner import EvalItem, EvalSettings, Evaluator
from smrabooth.metrics.tracking import load_cotracker
from smrabooth.video import write_video


def test_cotracker_plugin_gets_frame0_queries_and_pixel_video(tmp_path, monkeypatch):
    calls = {}

    class CoTrackerPredictor(torch.nn.Module):
        def __init__(self, checkpoint, offline=True, window_len=60):
            super().__init__()
            calls["init"] = (checkpoint, offline, window_len)

        def _compute_sparse_tracks(self, video, queries, segm_mask=None, grid_size=0, add_support_grid=False,
                                   grid_query_frame=0, backward_tracking=False):  # the predictor's signature
            calls["video"], calls["queries"], calls["support"] = video, queries, add_support_grid
            t = video.shape[1]
            steps = torch.arange(t, dtype=torch.float32)[:, None, None] * torch.tensor([2.0, 0.0])
            tracks = queries[:, None, :, 1:] + steps[None]  # every point moves right by 2 px per frame
            return tracks, torch.ones(tracks.shape[:3], dtype=torch.bool)

    pkg = types.ModuleType("cotracker")
    pred = types.ModuleType("cotracker.predictor")
    pred.CoTrackerPredictor = CoTrackerPredictor
    monkeypatch.setitem(sys.modules, "cotracker", pkg)
    monkeypatch.setitem(sys.modules, "cotracker.predictor", pred)
    ckpt = tmp_path / "scaled_offline.pth"
    ckpt.write_bytes(b"x")
    tracker = load_cotracker(ckpt, device="cpu")
    frames = np.full((5, 16, 20, 3), 200, np.uint8)
    q = torch.tensor([[3.0, 4.0], [10.0, 8.0]])
    tracks, vis = tracker(frames, q)
    assert calls["init"] == (str(ckpt), True, 60) and calls["support"] is False
    assert calls["video"].shape == (1, 5, 3, 16, 20) and calls["video"].max() == 200  # 0..255, (B, T, C, H, W)
    assert torch.equal(calls["queries"][0], torch.tensor([[0.0, 3.0, 4.0], [0.0, 10.0, 8.0]]))  # (t, x, y)
    assert tracks.shape == (5, 2, 2) and tracks[4, 1, 0] == 18.0 and vis.all()
    with pytest.raises(ModelLoadError, match="checkpoint"):
        load_cotracker(tmp_path / "missing.pth", device="cpu")


def test_searaft_wiring_in_the_evaluator(tmp_path, monkeypatch):
    mod = types.ModuleType("smrabooth.models.searaft")
    seen = {}

    def load_searaft(path_or_id, device=None, local_files_only=None):
        seen["load"] = (path_or_id, local_files_only)
        return "model"

    def compute_flow(model, image1, image2, iters=None):
        assert model == "model" and image1.dtype == torch.float32 and image1.max() <= 1
        seen["iters"] = iters
        f = torch.zeros(image1.shape[0], 2, *image1.shape[-2:])
        f[0, 1], f[1, 1] = 1.0, -1.0  # everything moves down one pixel
        return f

    mod.load_searaft, mod.compute_flow = load_searaft, compute_flow
    monkeypatch.setitem(sys.modules, "smrabooth.models.searaft", mod)
    rng = np.random.default_rng(0)
    write_video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / "a.mp4", fps=4)
    write_video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / "b.mp4", fps=4)
    s = EvalSettings(device="cpu", searaft_model="my/searaft", searaft_iters=7, mf_grid=5, mf_box=(2, 2, 28, 26),
                     local_files_only=True)
    ev = Evaluator(s, ["motion_fidelity"])
    rows = ev.run([EvalItem("m", tmp_path / "a.mp4", None, [], tmp_path / "b.mp4")], thumbnails=False)
    assert ev.tracker_used == "SEA-RAFT flow chaining (my/searaft)"
    assert rows[0]["motion_fidelity"] == pytest.approx(100.0)
    assert seen == {"load": ("my/searaft", True), "iters": 7}


def test_motion_fidelity_without_a_tracker_is_skipped_with_a_reason(tmp_path):
    rng = np.random.default_rng(0)
    write_video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / "a.mp4", fps=4)
    msgs = []
    ev = Evaluator(EvalSettings(device="cpu", tracker="cotracker"), ["motion_fidelity"], warn=msgs.append)
    rows = ev.run([EvalItem("m", tmp_path / "a.mp4", None, [], tmp_path / "a.mp4")], thumbnails=False)
    assert rows[0]["motion_fidelity"] is None and "Motion Fidelity" in msgs[0] and "CoTracker" in msgs[0]


def test_imaging_quality_uses_vbench_resize_and_mean_mos(monkeypatch):
    shapes = []

    class FakeMusiq:
        def __call__(self, x):  # "MOS" = 100 x mean intensity, so the expected value is known
            shapes.append(tuple(x.shape))
            assert 0 <= x.min() and x.max() <= 1
            return x.mean() * 100

    fake = types.ModuleType("pyiqa")
    fake.create_metric = lambda name, device=None, as_loss=False: (name, FakeMusiq())[1]
    monkeypatch.setitem(sys.modules, "pyiqa", fake)
    scorer = load_imaging(device="cpu")
    frames = np.stack([np.full((600, 800, 3), v, np.uint8) for v in (51, 102, 153)])
    assert imaging_quality(scorer, frames) == pytest.approx(np.mean([20, 40, 60]), abs=1e-4)
    assert shapes == [(1, 3, 384, 512)] * 3  # longer side 800 -> 512, one frame at a time
