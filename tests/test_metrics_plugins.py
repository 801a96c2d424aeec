"""The optional plug-ins (CoTracker3, SEA-RAFT, pyiqa) wired through stand-in modules with known outputs:
checks the calling conventions and the aggregation, not the real networks (not available here)."""

import os
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
    s = EvalSettings(device="cpu", tracker="searaft", searaft_model="my/searaft", searaft_iters=7, mf_grid=5,
                     mf_box=(2, 2, 28, 26), local_files_only=True)
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


# ------------------------------------------------------------------ which tracker scores Motion Fidelity
FAKE_PREDICTOR = '''
import torch


class CoTrackerPredictor(torch.nn.Module):
    """A stand-in with the real predictor's loading behaviour: build the CoTracker3 model, then a strict
    load_state_dict of the checkpoint (a CoTracker2 file has other keys: RuntimeError)."""

    def __init__(self, checkpoint="./checkpoints/scaled_offline.pth", offline=True, v2=False, window_len=60):
        super().__init__()
        self.model = torch.nn.Linear(2, 2)  # "CoTracker3 offline"
        self.model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))

    def _compute_sparse_tracks(self, video, queries, segm_mask=None, grid_size=0, add_support_grid=False, **kw):
        t = video.shape[1]
        tracks = queries[:, None, :, 1:] + torch.arange(t)[None, :, None, None] * torch.tensor([1.0, 0.0])
        return tracks, torch.ones(tracks.shape[:3], dtype=torch.bool)
'''
OLD_PREDICTOR = '''
import torch


class CoTrackerPredictor(torch.nn.Module):  # a checkout from before CoTracker3: no `offline`
    def __init__(self, checkpoint="./checkpoints/cotracker2.pth"):
        super().__init__()
'''


def fake_checkout(folder, source=FAKE_PREDICTOR):
    (folder / "cotracker").mkdir(parents=True)
    (folder / "cotracker" / "__init__.py").write_text("")
    (folder / "cotracker" / "predictor.py").write_text(source)
    return folder


@pytest.fixture
def clean_imports(tmp_path, monkeypatch):
    """No cotracker module or torch.hub cache from elsewhere: each test brings its own."""
    for name in [m for m in sys.modules if m == "cotracker" or m.startswith("cotracker.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    yield
    for name in [m for m in sys.modules if m == "cotracker" or m.startswith("cotracker.")]:
        del sys.modules[name]


def one_pair(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / f"{name}.mp4", fps=4)
    return [EvalItem("m", tmp_path / "a.mp4", None, [], tmp_path / "b.mp4")]


def run_mf(tmp_path, **settings):
    msgs = []
    ev = Evaluator(EvalSettings(device="cpu", mf_grid=3, **settings), ["motion_fidelity"], warn=msgs.append)
    rows = ev.run(one_pair(tmp_path), thumbnails=False)
    return ev, rows, msgs


def test_auto_never_falls_back_to_searaft(tmp_path, monkeypatch, clean_imports):
    """No CoTracker3 given or cached: Motion Fidelity is skipped with the reason, even with a SEA-RAFT model
    at hand; the built-in tracker runs only when asked for by name."""
    mod = types.ModuleType("smrabooth.models.searaft")
    mod.load_searaft = lambda *a, **k: pytest.fail("SEA-RAFT loaded without --tracker searaft")
    monkeypatch.setitem(sys.modules, "smrabooth.models.searaft", mod)
    ev, rows, msgs = run_mf(tmp_path, searaft_model="my/searaft")
    assert rows[0]["motion_fidelity"] is None and ev.tracker_used is None
    reason = ev.skipped["motion_fidelity"]
    assert "CoTracker3" in reason and "--cotracker-checkpoint" in reason and "--tracker searaft" in reason
    assert len(msgs) == 1 and "\n" not in reason


def test_auto_uses_a_given_or_cached_cotracker3(tmp_path, clean_imports):
    hub = tmp_path / "hub"
    fake_checkout(hub / "facebookresearch_co-tracker_main")
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(torch.nn.Linear(2, 2).state_dict(), hub / "checkpoints" / "scaled_offline.pth")
    ev, rows, _ = run_mf(tmp_path)  # nothing given: the cached code and checkpoint
    assert ev.tracker_used == "CoTracker3 (scaled_offline.pth)" and rows[0]["tracker"] == ev.tracker_used
    assert rows[0]["motion_fidelity"] == pytest.approx(100.0)  # every point moves right in both videos
    given = tmp_path / "mine.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), given)
    ev, rows, _ = run_mf(tmp_path, cotracker_checkpoint=str(given))
    assert ev.tracker_used == "CoTracker3 (mine.pth)"


@pytest.mark.parametrize("case", ["cotracker2_checkpoint", "old_checkout", "damaged_file"])
def test_an_unusable_cotracker_skips_the_metric_with_the_reason(tmp_path, clean_imports, case):
    repo = fake_checkout(tmp_path / "co-tracker", OLD_PREDICTOR if case == "old_checkout" else FAKE_PREDICTOR)
    ckpt = tmp_path / "cotracker2.pth"
    if case == "damaged_file":
        ckpt.write_bytes(b"not a checkpoint")
    else:  # another architecture's weights
        torch.save(torch.nn.Linear(3, 5).state_dict(), ckpt)
    ev, rows, msgs = run_mf(tmp_path, cotracker_checkpoint=str(ckpt), cotracker_repo=str(repo))
    reason = ev.skipped["motion_fidelity"]
    assert rows[0]["motion_fidelity"] is None and ev.failed == {} and "Motion Fidelity" in msgs[0]
    if case == "old_checkout":
        assert "predates CoTracker3" in reason
    else:
        assert "cotracker2.pth is not a CoTracker3 offline checkpoint" in reason and "scaled_offline.pth" in reason


@pytest.mark.skipif(not os.environ.get("SMRABOOTH_COTRACKER_REPO"),
                    reason="set SMRABOOTH_COTRACKER_REPO to a clone of facebookresearch/co-tracker")
def test_the_real_cotracker_code_loads_cotracker3_and_refuses_cotracker2(tmp_path, clean_imports):
    """Random-weight checkpoints of both architectures, built by the real co-tracker code."""
    repo = os.environ["SMRABOOTH_COTRACKER_REPO"]
    sys.path.insert(0, repo)
    from cotracker.models.build_cotracker import build_cotracker

    torch.save(build_cotracker(None, offline=True, window_len=60).state_dict(), tmp_path / "scaled_offline.pth")
    torch.save(build_cotracker(None, v2=True, window_len=8).state_dict(), tmp_path / "cotracker2.pth")
    tracker = load_cotracker(tmp_path / "scaled_offline.pth", repo, device="cpu")
    tracks, visible = tracker(np.zeros((4, 32, 32, 3), np.uint8), torch.tensor([[5.0, 6.0], [20.0, 9.0]]))
    assert tracks.shape == (4, 2, 2) and visible.shape == (4, 2)
    with pytest.raises(ModelLoadError, match="cotracker2.pth is not a CoTracker3 offline checkpoint"):
        load_cotracker(tmp_path / "cotracker2.pth", repo, device="cpu")
