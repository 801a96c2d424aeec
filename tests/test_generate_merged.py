"""Merged LoRA execution against peft adapters, the exact restore of the base weights, and the execution
options (batched CFG, step cache, attention backend) against the plain loop."""

import numpy as np
import pytest
import torch
from conftest import make_random_lora

from smrabooth.errors import SmraboothError
from smrabooth.lora.merge import merge_loras
from smrabooth.sampling import GenerateConfig, generate

SMALL = dict(frames=9, height=32, width=48, steps=6, guidance=5.0, seed=3)


def frames(pipe, cfg, subject=None, motion=None):
    return generate(pipe, cfg, subject, motion, progress=False).frames.astype(int)


@pytest.mark.parametrize("injection,t_point", [("sparse", 2), ("sparse", 0), ("dense", None)])
def test_merged_equals_adapter(tiny_pipe, injection, t_point):
    """Same frames from LoRAs merged into the weights as from peft adapters (fp32, uint8 difference <= 1),
    with the subject's switch inside the run (t_point 2 of 6), before it (0), and dense injection."""
    tr = tiny_pipe.transformer
    subject = make_random_lora(tr, seed=1, kind="subject")
    motion = make_random_lora(tr, seed=2, kind="motion")
    kw = dict(prompt="a V* dog doing S*", injection=injection, t_point=t_point, subject_scale_early=0.3,
              subject_scale=0.9, motion_scale=0.7, **SMALL)
    adapter = frames(tiny_pipe, GenerateConfig(lora_mode="adapter", **kw), subject, motion)
    merged = frames(tiny_pipe, GenerateConfig(lora_mode="merged", **kw), subject, motion)
    base = frames(tiny_pipe, GenerateConfig(prompt=kw["prompt"], **SMALL))
    assert np.abs(merged - adapter).max() <= 1
    assert np.abs(merged - base).max() > 5  # the LoRAs did act


def test_merged_generation_restores_weights_bit_for_bit(tiny_pipe):
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    tr = tiny_pipe.transformer
    before = {k: v.clone() for k, v in tr.state_dict().items()}
    subject, motion = make_random_lora(tr, seed=1), make_random_lora(tr, seed=2)
    frames(tiny_pipe, GenerateConfig(prompt="a dog", lora_mode="merged", t_point=3, **SMALL), subject, motion)
    after = tr.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not getattr(tr, "peft_config", None)

    # and the next generation without LoRAs is a fresh pipeline's, bit for bit
    fresh = build_tiny_wan_pipeline()
    cfg = GenerateConfig(prompt="a dog", **SMALL)
    assert np.array_equal(frames(tiny_pipe, cfg), frames(fresh, cfg))


def test_merge_is_w0_plus_scaled_ba(tiny_pipe):
    """W = W0 + scale * alpha/r * B @ A on exactly the LoRA's layers; re-merging starts from W0."""
    tr = tiny_pipe.transformer
    subject = make_random_lora(tr, rank=4, alpha=8.0, layer_types=("q", "k"), seed=1)
    q, v = tr.blocks[1].attn1.to_q, tr.blocks[1].attn1.to_v
    q0, v0 = q.weight.detach().clone(), v.weight.detach().clone()
    A, B = subject.tensors["blocks.1.attn1.to_q.lora_A.weight"], subject.tensors["blocks.1.attn1.to_q.lora_B.weight"]
    merged = merge_loras(tr, {"subject": (subject, None)})
    try:
        merged.set_scales({"subject": 0.5})
        torch.testing.assert_close(q.weight.detach(), q0 + 0.5 * 2.0 * B.float() @ A.float())
        merged.set_scales({"subject": 0.25})
        torch.testing.assert_close(q.weight.detach(), q0 + 0.25 * 2.0 * B.float() @ A.float())
        assert torch.equal(v.weight, v0)  # not a layer of this LoRA
    finally:
        merged.restore()
    assert torch.equal(q.weight, q0)


def test_failed_attach_leaves_no_adapter(tiny_pipe):
    """A good subject LoRA and a motion LoRA of the wrong shape: an error, and the pipeline keeps no adapter
    (the next generation without LoRAs equals a clean one)."""
    tr = tiny_pipe.transformer
    cfg = GenerateConfig(prompt="a dog", **SMALL)
    clean = frames(tiny_pipe, cfg)
    subject = make_random_lora(tr, seed=1)
    motion = make_random_lora(tr, seed=2)
    key = next(k for k in motion.tensors if k.endswith("lora_B.weight"))
    motion.tensors[key] = torch.zeros(motion.tensors[key].shape[0] + 1, motion.rank)
    for mode in ("adapter", "merged"):
        with pytest.raises((SmraboothError, RuntimeError, ValueError)):
            frames(tiny_pipe, GenerateConfig(prompt="a dog", lora_mode=mode, **SMALL), subject, motion)
        assert not getattr(tr, "peft_config", None)
        assert np.array_equal(frames(tiny_pipe, cfg), clean)


def test_batched_cfg_matches_two_passes(tiny_pipe):
    cfg = dict(prompt="a V* dog", negative_prompt="blurry", **SMALL)
    two = frames(tiny_pipe, GenerateConfig(**cfg))
    one = frames(tiny_pipe, GenerateConfig(cfg_batch=True, **cfg))
    assert np.abs(one - two).max() <= 1


def test_step_cache_is_undone_and_changes_little(tiny_pipe):
    cfg = dict(prompt="a V* dog", **{**SMALL, "steps": 8})
    plain = frames(tiny_pipe, GenerateConfig(**cfg))
    cached = frames(tiny_pipe, GenerateConfig(cache="first-block:0.5", **cfg))
    assert np.abs(cached - plain).max() > 0  # the cache did skip computation
    assert np.array_equal(frames(tiny_pipe, GenerateConfig(**cfg)), plain)  # and is gone afterwards


def test_execution_option_errors(tiny_pipe):
    with pytest.raises(SmraboothError, match="--cache 'nope'"):
        GenerateConfig(cache="nope").validate()
    with pytest.raises(SmraboothError, match="threshold must be a positive"):
        GenerateConfig(cache="first-block:-1").validate()
    with pytest.raises(SmraboothError, match="--lora-mode"):
        GenerateConfig(lora_mode="fused").validate()
    with pytest.raises(SmraboothError, match="installed backends: .*native"):
        GenerateConfig(attention="flash_hub").validate()


def test_attention_backend_native_math_equals_default(tiny_pipe):
    cfg = dict(prompt="a V* dog", **SMALL)
    assert np.abs(frames(tiny_pipe, GenerateConfig(attention="_native_math", **cfg))
                  - frames(tiny_pipe, GenerateConfig(**cfg))).max() <= 1


def test_official_sampler_schedule():
    """The authors' inference: Euler with shift 1 (sigmas 1, 0.98, ...), subject 0.6 then 0.8 from step 15 of
    50 (sigma 0.70), motion 1.0, their negative prompt; another step count switches at sigma 0.70."""
    from smrabooth.recipes import OFFICIAL_NEGATIVE_PROMPT, OFFICIAL_SAMPLER
    from smrabooth.sampling import schedule_for
    from smrabooth.schedules import shifted_linear_sigmas, t_point_sigma

    settings = OFFICIAL_SAMPLER.generate_settings()
    cfg = GenerateConfig(prompt="a sks dog is vvt walking", **settings).validate()
    assert (cfg.frames, cfg.height, cfg.width, cfg.fps, cfg.guidance) == (49, 480, 832, 15.0, 5.0)
    assert cfg.negative_prompt == OFFICIAL_NEGATIVE_PROMPT and cfg.negative_prompt.startswith("色调艳丽")
    sigmas = shifted_linear_sigmas(50, cfg.shift)
    np.testing.assert_allclose(sigmas, 1 - np.arange(50) / 50)
    assert t_point_sigma(15, 50, 1.0) == pytest.approx(0.70)
    schedule = schedule_for(cfg, list(sigmas))
    assert schedule.t_point == 15
    assert [schedule.scales_at(i)["subject"] for i in (0, 14, 15, 49)] == [0.6, 0.6, 0.8, 0.8]
    assert {schedule.scales_at(i)["motion"] for i in range(50)} == {1.0}
    # 20 steps: the step at sigma 0.70 is 6 (the paper's preset would map its own 0.92 to step 1)
    cfg20 = GenerateConfig(**{**settings, "steps": 20})
    assert schedule_for(cfg20, list(shifted_linear_sigmas(20, 1.0))).t_point == 6


def test_official_preset_runs_merged_with_the_switch(tiny_pipe):
    """The preset end to end (small size) with both LoRAs merged: equal to adapter mode, and the merged
    weights were re-merged once, at the switch."""
    from smrabooth.lora import merge as merge_mod
    from smrabooth.recipes import OFFICIAL_SAMPLER

    tr = tiny_pipe.transformer
    subject, motion = make_random_lora(tr, seed=1, kind="subject"), make_random_lora(tr, seed=2, kind="motion")
    settings = {**OFFICIAL_SAMPLER.generate_settings(), **SMALL, "steps": 10}
    merges = []
    original = merge_mod.MergedLoras.set_scales

    def counting(self, scales):
        if scales != self.scales:
            merges.append(dict(scales))
        return original(self, scales)

    merge_mod.MergedLoras.set_scales = counting
    try:
        merged = frames(tiny_pipe, GenerateConfig(prompt="a dog", lora_mode="merged", **settings), subject, motion)
    finally:
        merge_mod.MergedLoras.set_scales = original
    adapter = frames(tiny_pipe, GenerateConfig(prompt="a dog", lora_mode="adapter", **settings), subject, motion)
    assert merges == [{"subject": 0.6, "motion": 1.0}, {"subject": 0.8, "motion": 1.0}]
    assert np.abs(merged - adapter).max() <= 1
