"""Step caches (step_cache.py): MagCache calibrated once per model and schedule, and both caches computing in
full at the step where the LoRA scales switch."""

import numpy as np
import pytest
import torch
from conftest import make_random_lora

from smrabooth import step_cache
from smrabooth.errors import SmraboothError
from smrabooth.sampling import GenerateConfig, generate

SMALL = dict(frames=9, height=32, width=48, steps=8, seed=3)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SMRABOOTH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def frames(pipe, cfg, subject=None):
    return generate(pipe, cfg, subject, None, progress=False).frames.astype(int)


def residual_ratios(pipe, cfg) -> list[float]:
    """MagCache's calibration formula computed apart from diffusers: per step, the mean over tokens of
    |r_t| / |r_(t-1)|, r = the last block's output minus the first block's input (1.0 at the first step)."""
    blocks = pipe.transformer.blocks
    seen = {}
    hooks = [blocks[0].register_forward_pre_hook(lambda m, a, k: seen.update(x=k.get("hidden_states", a[0] if a else None)),
                                                 with_kwargs=True),
             blocks[-1].register_forward_hook(lambda m, a, out: seen.setdefault("r", []).append(
                 (out[0] if isinstance(out, tuple) else out) - seen["x"]))]
    try:
        frames(pipe, cfg)
    finally:
        for h in hooks:
            h.remove()
    r = seen["r"]
    return [1.0] + [float((torch.linalg.norm(b.float(), dim=-1) / (torch.linalg.norm(a.float(), dim=-1) + 1e-8)).mean())
                    for a, b in zip(r, r[1:])]


def test_magcache_calibrates_once_then_skips_and_is_undone(tiny_pipe, cache_dir):
    cfg = dict(prompt="a V* dog", guidance=1.0, **SMALL)  # one cache context (no CFG)
    plain = frames(tiny_pipe, GenerateConfig(**cfg))
    calibrating = frames(tiny_pipe, GenerateConfig(cache="mag:100", **cfg))
    assert np.array_equal(calibrating, plain)  # the calibrating video skips nothing
    (stored,) = list((cache_dir / "magcache").glob("*.json"))
    ratios = step_cache.read_ratios(stored)
    assert len(ratios) == SMALL["steps"]
    assert ratios == pytest.approx(residual_ratios(tiny_pipe, GenerateConfig(**cfg)), rel=1e-4)
    assert len(set(np.round(ratios, 4))) > 2  # not a constant: the check above can tell steps apart
    cached = frames(tiny_pipe, GenerateConfig(cache="mag:100", **cfg))
    assert np.abs(cached - plain).max() > 0  # the stored ratios are used: passes were skipped
    assert np.array_equal(frames(tiny_pipe, GenerateConfig(**cfg)), plain)  # and the cache is gone afterwards
    other = GenerateConfig(cache="mag", **{**cfg, "steps": 6})
    frames(tiny_pipe, other)  # another schedule: calibrated apart
    assert len(list((cache_dir / "magcache").glob("*.json"))) == 2


def test_unreadable_ratios_are_measured_again(tiny_pipe, cache_dir):
    cfg = GenerateConfig(prompt="a V* dog", guidance=1.0, cache="mag", **SMALL)
    path = step_cache.calibration_path(None, tiny_pipe.transformer, cfg.steps, cfg.shift, cfg.scheduler)
    path.parent.mkdir(parents=True)
    for text in ("{", '{"ratios": [1.0, "x"]}', '{"ratios": [NaN]}', "[]"):
        path.write_text(text)
        assert step_cache.read_ratios(path) is None
    frames(tiny_pipe, cfg)
    assert len(step_cache.read_ratios(path)) == SMALL["steps"]


def passes_per_step(pipe, cfg, subject) -> list[int]:
    """How many model passes ran the last block at each step (a skipped pass does not)."""
    calls, step = [], [0]
    hook = pipe.transformer.blocks[-1].attn1.register_forward_hook(lambda *a: calls.append(step[0]))
    try:
        generate(pipe, cfg, subject, None, progress=False, on_step=lambda i, scales: step.__setitem__(0, i))
    finally:
        hook.remove()
    return [calls.count(i) for i in range(cfg.steps)]


@pytest.mark.parametrize("cache", ["first-block:1e6", "mag:1e6"])
def test_the_switch_step_computes_in_full(tiny_pipe, cache_dir, cache, monkeypatch):
    """With a threshold that skips every pass it may, the step where the subject LoRA's scale switches
    (t_point 3) still runs the whole model in both CFG passes; without the reset it would reuse a residual
    computed under the old scale."""
    subject = make_random_lora(tiny_pipe.transformer, seed=1, kind="subject")
    cfg = GenerateConfig(prompt="a V* dog", guidance=5.0, injection="sparse", t_point=3, subject_scale_early=0.5,
                         subject_scale=1.0, cache=cache, **SMALL)
    frames(tiny_pipe, cfg, subject)  # MagCache: calibrates first
    ran = passes_per_step(tiny_pipe, cfg, subject)
    assert ran[3] == 2, ran
    monkeypatch.setattr(step_cache, "drop_cached_pass", lambda transformer: 0)
    without = passes_per_step(tiny_pipe, cfg, subject)
    assert without[3] == 0, without  # the check above can fail: without the reset step 3 is skipped
    assert sum(without) < sum(ran)


def test_magcache_refuses_two_experts():
    from types import SimpleNamespace

    from smrabooth.step_cache import step_caches

    with pytest.raises(SmraboothError, match="two experts"):
        with step_caches({"high": SimpleNamespace(), "low": SimpleNamespace()}, "mag", 8, None, None):
            pass
    with pytest.raises(SmraboothError, match="--cache 'magic'"):
        GenerateConfig(cache="magic").validate()


def test_fast_is_merged_loras_and_magcache(tiny_pipe, cache_dir):
    """--fast on the CPU: the video of --lora-mode merged --cache mag:0.06 (no compile on a CPU), mag:0.25 from 50
    steps on, and a cache the user names is kept."""
    subject = make_random_lora(tiny_pipe.transformer, seed=1, kind="subject")
    cfg = dict(prompt="a V* dog", guidance=5.0, **SMALL)
    frames(tiny_pipe, GenerateConfig(cache="mag", **cfg), subject)  # calibrates
    fast = frames(tiny_pipe, GenerateConfig(fast=True, **cfg), subject)
    by_hand = frames(tiny_pipe, GenerateConfig(lora_mode="merged", cache="mag:0.06", **cfg), subject)
    exact = frames(tiny_pipe, GenerateConfig(lora_mode="merged", **cfg), subject)
    assert np.array_equal(fast, by_hand) and not np.array_equal(fast, exact)
    named = frames(tiny_pipe, GenerateConfig(fast=True, cache="first-block:0.05", **cfg), subject)
    assert np.array_equal(named, frames(tiny_pipe, GenerateConfig(lora_mode="merged", cache="first-block:0.05", **cfg),
                                        subject))
    many = {**cfg, "steps": 50}
    frames(tiny_pipe, GenerateConfig(cache="mag", **many), subject)  # calibrates this schedule
    fast = frames(tiny_pipe, GenerateConfig(fast=True, **many), subject)
    assert np.array_equal(fast, frames(tiny_pipe, GenerateConfig(lora_mode="merged", cache="mag:0.25", **many), subject))
    assert not np.array_equal(fast, frames(tiny_pipe, GenerateConfig(lora_mode="merged", cache="mag:0.06", **many),
                                           subject))
