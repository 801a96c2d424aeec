"""Generation: our sampler against stock WanPipeline, the paper's Euler sampler, sparse injection."""

import numpy as np
import pytest
import torch
from conftest import make_random_lora

from smrabooth.sampling import PRESETS, GenerateConfig, generate, sample_video
from smrabooth.schedules import InjectionSchedule, shifted_linear_sigmas, t_point_sigma

PAPER_SHIFT = 5.0

SMALL = dict(frames=9, height=32, width=48, steps=4, guidance=5.0, seed=3)


def stock_frames(pipe, prompt, negative=None, **kw):
    out = pipe(prompt=prompt, negative_prompt=negative, num_frames=kw["frames"], height=kw["height"],
               width=kw["width"], num_inference_steps=kw["steps"], guidance_scale=kw["guidance"],
               generator=torch.Generator().manual_seed(kw["seed"]), output_type="np").frames[0]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def test_no_lora_equals_stock_wanpipeline(tiny_pipe):
    cfg = GenerateConfig(prompt="a V* dog on the beach", negative_prompt="blurry", **SMALL)
    ours = generate(tiny_pipe, cfg, progress=False).frames
    stock = stock_frames(tiny_pipe, "a V* dog on the beach", "blurry", **SMALL)
    assert ours.shape == (9, 32, 48, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - stock.astype(int)).max() <= 1
    assert ours.std() > 5  # a real decoded video, not a constant


def test_seed_changes_output(tiny_pipe):
    a = generate(tiny_pipe, GenerateConfig(prompt="a dog", **SMALL), progress=False).frames
    b = generate(tiny_pipe, GenerateConfig(prompt="a dog", **{**SMALL, "seed": 4}), progress=False).frames
    assert np.abs(a.astype(int) - b.astype(int)).max() > 10


def test_euler_sampler_is_diffsynth_flow_matching_euler(tiny_pipe):
    """--scheduler euler: sigmas = shift(linspace(1,0,S+1)[:-1]); x <- x + (sigma_next - sigma) * v."""
    steps, shift = 5, 5.0
    cfg = GenerateConfig(prompt="a red ball", scheduler="euler", shift=shift, **{**SMALL, "steps": steps})
    result = sample_video(tiny_pipe, cfg, progress=False, output_type="latent")
    np.testing.assert_allclose(result.sigmas, shifted_linear_sigmas(steps, shift), rtol=1e-6)

    # the same loop written out by hand
    pipe, tr = tiny_pipe, tiny_pipe.transformer
    cond, uncond = pipe.encode_prompt("a red ball", None, True, 1, max_sequence_length=512, device="cpu")
    latents = pipe.prepare_latents(1, 16, 32, 48, 9, torch.float32, "cpu", torch.Generator().manual_seed(3))
    sig = list(shifted_linear_sigmas(steps, shift)) + [0.0]
    with torch.no_grad():
        for i in range(steps):
            t = torch.tensor([sig[i] * 1000.0])
            v_c = tr(latents, t, cond, return_dict=False)[0]
            v_u = tr(latents, t, uncond, return_dict=False)[0]
            v = v_u + 5.0 * (v_c - v_u)
            latents = latents + (sig[i + 1] - sig[i]) * v
    torch.testing.assert_close(result.frames, latents, rtol=1e-4, atol=1e-5)


def test_t_point_maps_by_noise_level():
    # The paper's own run (50 Euler steps, shift 5) switches at step 15.
    sigmas50 = shifted_linear_sigmas(50, PAPER_SHIFT)
    cfg = GenerateConfig(**PRESETS["paper"])
    from smrabooth.sampling import schedule_for

    assert schedule_for(cfg, list(sigmas50)).t_point == 15
    assert abs(sigmas50[15] - t_point_sigma()) < 1e-12
    # 25 steps: the step whose sigma is closest to the paper's switch sigma (not 15 * 25/50 by index).
    sigmas25 = shifted_linear_sigmas(25, PAPER_SHIFT)
    t25 = schedule_for(GenerateConfig(**{**PRESETS["paper"], "steps": 25}),
                       list(sigmas25)).t_point
    assert t25 == int(np.argmin(np.abs(sigmas25 - t_point_sigma())))
    assert abs(sigmas25[t25] - t_point_sigma()) <= min(abs(s - t_point_sigma()) for s in sigmas25)
    # an explicit --t-point wins
    assert schedule_for(GenerateConfig(**{**PRESETS["paper"], "t_point": 7}), list(sigmas50)).t_point == 7


def test_injection_schedule_scales():
    s = InjectionSchedule(t_point=3, subject_early=0.5, subject_late=1.0, motion=0.8)
    assert [s.scales_at(i)["subject"] for i in range(6)] == [0.5, 0.5, 0.5, 1.0, 1.0, 1.0]
    assert all(s.scales_at(i)["motion"] == 0.8 for i in range(6))
    c = InjectionSchedule.constant(0.7, 0.9)
    assert c.scales_at(0) == c.scales_at(49) == {"subject": 0.7, "motion": 0.9}


def record_lora_scales(transformer):
    """Forward hooks on every LoRA layer: (layer type, {adapter: scale actually used}) per call."""
    from peft.tuners.lora import LoraLayer

    from smrabooth.lora.targets import layer_type_of

    calls, handles = [], []
    for name, module in transformer.named_modules():
        if isinstance(module, LoraLayer) and layer_type_of(name):
            def hook(mod, args, name=name):
                used = {a: mod.scaling[a] / (mod.lora_alpha[a] / mod.r[a])
                        for a in mod.active_adapters if a in mod.lora_A}
                calls.append((name, layer_type_of(name), used))
            handles.append(module.register_forward_pre_hook(hook))
    return calls, handles


@pytest.mark.parametrize("injection", ["sparse", "dense"])
def test_scales_each_layer_used_at_each_step(tiny_pipe, injection):
    tr = tiny_pipe.transformer
    subject = make_random_lora(tr, seed=1, kind="subject")
    motion = make_random_lora(tr, seed=2, kind="motion")
    steps, t_point = 6, 2
    cfg = GenerateConfig(prompt="a V* dog doing S*", injection=injection, t_point=t_point, subject_scale_early=0.3,
                         subject_scale=0.9, motion_scale=0.7, **{**SMALL, "steps": steps})

    from smrabooth.sampling import attach_loras, detach_loras

    layers = attach_loras(tiny_pipe, cfg, subject, motion)
    calls, handles = record_lora_scales(tr)
    per_step = []
    sample_video(tiny_pipe, cfg, layers, progress=False, on_step=lambda i, s: per_step.append(len(calls)))
    for h in handles:
        h.remove()
    detach_loras(tiny_pipe)

    per_step.append(len(calls))
    n_layers = 2 * 10  # 2 blocks x 10 linears with LoRA
    for step in range(steps):
        step_calls = calls[per_step[step]:per_step[step + 1]]
        assert len(step_calls) == 2 * n_layers  # cond and uncond passes, every LoRA layer once each
        want_subject = 0.3 if (injection == "sparse" and step < t_point) else 0.9
        for name, ltype, used in step_calls:
            if injection == "dense":
                assert used == pytest.approx({"subject": 0.9, "motion": 0.7}), (step, name)
                continue
            expected = {}
            if ltype in ("q", "k", "ffn.0"):
                expected["subject"] = want_subject
            if ltype in ("v", "o", "ffn.0", "ffn.2"):
                expected["motion"] = 0.7
            assert used == pytest.approx(expected), (step, name, used)


def test_sparse_and_dense_differ_and_loras_change_output(tiny_pipe):
    tr = tiny_pipe.transformer
    subject, motion = make_random_lora(tr, seed=1), make_random_lora(tr, seed=2)
    base = generate(tiny_pipe, GenerateConfig(prompt="a dog", **SMALL), progress=False).frames.astype(int)
    sparse = generate(tiny_pipe, GenerateConfig(prompt="a dog", **SMALL), subject, motion, progress=False).frames
    dense = generate(tiny_pipe, GenerateConfig(prompt="a dog", injection="dense", **SMALL), subject, motion,
                     progress=False).frames
    assert np.abs(sparse.astype(int) - base).max() > 5
    assert np.abs(dense.astype(int) - sparse.astype(int)).max() > 5
    # detaching restores the base model exactly
    again = generate(tiny_pipe, GenerateConfig(prompt="a dog", **SMALL), progress=False).frames.astype(int)
    assert np.array_equal(again, base)


def test_config_validation_messages():
    from smrabooth.errors import SmraboothError

    with pytest.raises(SmraboothError, match="4k\\+1.*use 9 or 13"):
        GenerateConfig(frames=10).validate()
    with pytest.raises(SmraboothError, match="multiple of 16"):
        GenerateConfig(height=470).validate()
    with pytest.raises(SmraboothError, match=r"--t-point .*: must be a whole number in \[0, 50\]"):
        GenerateConfig(t_point=51).validate()
    with pytest.raises(SmraboothError, match="unknown LoRA layer type"):
        GenerateConfig(subject_layers="q,x").validate()
