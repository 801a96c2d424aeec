"""scripts/check_motion_self_reproduction.py's path scores, on clips whose answers are known: the clip itself,
the clip moved sideways (the same path, somewhere else), the sprite held still, and an empty frame."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from smrabooth_sprites.world import MotionSpec, SpriteDesign, render_clip

SIZE, FRAMES = 64, 17


def load_script():
    path = Path(__file__).parents[1] / "scripts" / "check_motion_self_reproduction.py"
    spec = importlib.util.spec_from_file_location("check_motion_self_reproduction", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clip():
    design = SpriteDesign("circle", "red", "solid", "red")
    motion = MotionSpec("circle", phase=0.3, speed=0.9, start=(0.45, 0.5), size=0.1, amplitude=0.2, reverse=False)
    return render_clip(design, motion, "blue", FRAMES, SIZE)


def test_a_clip_scored_against_itself(clip):
    s = load_script().path_scores(clip.frames, {"positions": clip.positions, "scales": clip.scales}, SIZE)
    assert s["found"] == 1.0 and s["family"] == "circle"
    assert s["err"] < 0.01 and s["traj"] > 0.97 and abs(s["travel"] - 1) < 0.05 and abs(s["size"] - 1) < 0.1


def test_the_same_path_elsewhere_costs_err_but_not_traj(clip):
    truth = {"positions": clip.positions, "scales": clip.scales}
    moved = np.roll(clip.frames, 5, axis=2)  # 5 px to the right; the circle never reaches the wrapped border
    s = load_script().path_scores(moved, truth, SIZE)
    assert s["err"] == pytest.approx(5 / SIZE, abs=0.01)
    assert s["traj"] > 0.97 and abs(s["travel"] - 1) < 0.05 and s["family"] == "circle"


def test_a_still_sprite_and_an_empty_frame(clip):
    truth = {"positions": clip.positions, "scales": clip.scales}
    script = load_script()
    still = script.path_scores(np.repeat(clip.frames[:1], FRAMES, 0), truth, SIZE)
    expected = np.linalg.norm(clip.positions - clip.positions[0], axis=1).mean() / SIZE
    assert still["travel"] == pytest.approx(0, abs=1e-6) and still["family"] == "static"
    assert still["err"] == pytest.approx(expected, abs=0.01) and still["traj"] < 0.1
    empty = script.path_scores(np.repeat(clip.frames[:1, :1], SIZE, 1).repeat(FRAMES, 0), truth, SIZE)
    assert empty["found"] == 0.0 and empty["family"] == "none" and empty["travel"] == 0.0
