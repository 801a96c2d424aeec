"""Trainers return the pipeline (and encoders) they are given as they found them: after training, normally or
after an error, the same pipeline object generates exactly what a fresh pipeline does."""

import numpy as np
import pytest
import test_train_motion as motion_tests
import test_train_subject as subject_tests

from smrabooth.models.dinov2 import build_tiny_dinov2
from smrabooth.models.tiny import build_tiny_wan_pipeline
from smrabooth.sampling import GenerateConfig, generate
from smrabooth.train.borrow import borrowed

VIDEO = GenerateConfig(prompt="a V* ball sliding right", negative_prompt="blurry", frames=5, height=32, width=32,
                       steps=3, guidance=5.0, seed=7)


@pytest.fixture(scope="module")
def fresh_frames():
    return generate(build_tiny_wan_pipeline(), VIDEO, progress=False).frames


def snapshot(pipe, *models):
    """Everything borrowing may change, in comparable form."""
    t = pipe.transformer
    return {
        "components": (id(pipe.text_encoder), id(pipe.vae), id(t)),
        "modules": [(n, type(m).__name__, m.training) for name, c in (("t", t), ("v", pipe.vae),
                    ("e", pipe.text_encoder), *((str(i), m) for i, m in enumerate(models)))
                    for n, m in ((f"{name}.{k}", v) for k, v in c.named_modules())],
        "params": [(n, p.device, p.dtype, p.requires_grad) for c in (t, pipe.vae, pipe.text_encoder, *models)
                   for n, p in c.named_parameters()],
        "peft": getattr(t, "peft_config", None), "checkpointing": t.is_gradient_checkpointing,
        "compiled": [n for n, m in t.named_modules() if getattr(m, "_compiled_call_impl", None) is not None],
    }


def assert_as_fresh(pipe, before, fresh_frames, *models):
    assert snapshot(pipe, *models) == before
    frames = generate(pipe, VIDEO, progress=False).frames
    np.testing.assert_array_equal(frames, fresh_frames)


def test_subject_training_returns_the_pipeline_as_it_was(tmp_path, fresh_frames):
    subject_tests.make_subject_folder(tmp_path / "subject")
    pipe, encoder = build_tiny_wan_pipeline(), build_tiny_dinov2()
    before = snapshot(pipe, encoder)
    # gradient checkpointing on, SuRA's hook and projector, validation (which switches eval/train)
    subject_tests.train(tmp_path, pipe, steps=2, gradient_checkpointing=True, validate_every=2,
                        validation_prompt="a V* ball", validation_frames=1, validation_steps=1)
    assert_as_fresh(pipe, before, fresh_frames, encoder)


def test_subject_training_error_returns_the_pipeline_as_it_was(tmp_path, fresh_frames, monkeypatch):
    subject_tests.make_subject_folder(tmp_path / "subject")
    pipe, encoder = build_tiny_wan_pipeline(), build_tiny_dinov2()
    before = snapshot(pipe, encoder)
    calls = []

    def failing_loss(*args):  # the second step of the loop fails
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return subject_tests.masked_flow_loss(*args)

    monkeypatch.setattr("smrabooth.train.subject.masked_flow_loss", failing_loss)
    with pytest.raises(RuntimeError, match="boom"):
        subject_tests.train(tmp_path, pipe, steps=3, gradient_checkpointing=True)
    assert len(calls) == 2
    assert_as_fresh(pipe, before, fresh_frames, encoder)


def test_motion_training_returns_the_pipeline_as_it_was(tmp_path, fresh_frames, monkeypatch):
    motion_tests.make_motion_folder(tmp_path / "motion")
    pipe, flow_model = build_tiny_wan_pipeline(), motion_tests.tiny_flow_model()
    before = snapshot(pipe, flow_model)
    motion_tests.train(tmp_path, pipe, flow_model, steps=1, gradient_checkpointing=True)
    assert_as_fresh(pipe, before, fresh_frames, flow_model)

    def failing_mora(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("smrabooth.train.motion.mora_loss", failing_mora)
    with pytest.raises(RuntimeError, match="boom"):
        motion_tests.train(tmp_path, pipe, flow_model, steps=1, out=str(tmp_path / "again"))
    assert_as_fresh(pipe, before, fresh_frames, flow_model)


def test_borrowed_undoes_compile_checkpointing_adapters_and_moves():
    from smrabooth.train.common import add_lora_adapter, compile_blocks

    pipe = build_tiny_wan_pipeline()
    before = snapshot(pipe)
    with borrowed(pipe):
        add_lora_adapter(pipe.transformer, "x", 2, 2.0, ("q", "k"))
        pipe.transformer.enable_gradient_checkpointing()
        compile_blocks(pipe.transformer)  # sets each block's compiled forward (compiled lazily, never run here)
        pipe.transformer.train()
        pipe.vae.requires_grad_(False)
        assert snapshot(pipe) != before
        pipe.text_encoder = None
    assert snapshot(pipe) == before

    # adapters that were there before stay, and stay active; only the added one goes
    add_lora_adapter(pipe.transformer, "user", 2, 2.0, ("v",))
    before = snapshot(pipe)
    with borrowed(pipe):
        add_lora_adapter(pipe.transformer, "x", 2, 2.0, ("q",))
    assert list(pipe.transformer.peft_config) == ["user"] and pipe.transformer.active_adapters() == ["user"]
    assert snapshot(pipe) == before


def test_generating_with_loras_returns_the_transformer_as_it_was(tmp_path, fresh_frames):
    """No adapter, no peft LoRA layer and no peft config stays behind a generation with LoRAs."""
    from smrabooth.lora.files import load_lora

    motion_tests.make_motion_folder(tmp_path / "motion")
    pipe, flow_model = build_tiny_wan_pipeline(), motion_tests.tiny_flow_model()
    _, lora = motion_tests.train(tmp_path, pipe, flow_model, steps=1)
    before = snapshot(pipe, flow_model)
    lora = load_lora(lora)
    for mode in ("adapter", "merged"):
        config = GenerateConfig(**{**VIDEO.__dict__, "lora_mode": mode})
        generate(pipe, config, lora, lora, progress=False)
        assert snapshot(pipe, flow_model) == before
    np.testing.assert_array_equal(generate(pipe, VIDEO, progress=False).frames, fresh_frames)


@pytest.mark.parametrize("recipe", ["paper", "official"])
def test_training_into_empty_lora_layers_leaves_no_adapter_behind(tmp_path, fresh_frames, recipe):
    """Deleting a transformer's last adapter leaves peft's (empty) LoRA layers; a trainer that adds its adapters
    to those same layers must take them out again. It once left them there, active, so every later generation
    without LoRAs ran with the trained ones (a bench that trains case after case in one process)."""
    from smrabooth.train.common import add_lora_adapter

    motion_tests.make_motion_folder(tmp_path / "motion")
    pipe, flow_model = build_tiny_wan_pipeline(), motion_tests.tiny_flow_model()
    add_lora_adapter(pipe.transformer, "user", 2, 2.0, ("q", "v", "ffn.0"))
    pipe.transformer.delete_adapters(["user"])
    before = snapshot(pipe, flow_model)
    two_phases = {"spatial_steps": 1, "temporal_steps": 1} if recipe == "official" else {}
    motion_tests.train(tmp_path, pipe, flow_model, steps=2, recipe=recipe, **two_phases)
    assert snapshot(pipe, flow_model) == before
    np.testing.assert_array_equal(generate(pipe, VIDEO, progress=False).frames, fresh_frames)


def denoiser_snapshot(pipe):
    """What borrowing may change in any backbone's pipeline: its components, their modules' train flags and
    parameters' devices, dtypes and requires_grad, the denoisers' peft configs."""
    from smrabooth.backbones import backbone_of

    backbone = backbone_of(pipe)
    parts = {n: getattr(pipe, n) for n in backbone.components if getattr(pipe, n, None) is not None}
    return {"ids": {n: id(m) for n, m in parts.items()},
            "modules": [(n, k, type(m).__name__, m.training) for n, c in parts.items() for k, m in c.named_modules()],
            "params": [(n, k, p.device, p.dtype, p.requires_grad) for n, c in parts.items()
                       for k, p in c.named_parameters()],
            "peft": [getattr(m, "peft_config", None) for m in backbone.denoisers(pipe).values()]}


@pytest.mark.parametrize("case", ["zeroscope-subject", "zeroscope-motion", "wan2.2-a14b-subject"])
def test_every_backbones_trainers_return_the_pipeline_as_they_found_it(tmp_path, case):
    """The U-Net's trainers and the A14B experts go through train/session.py as Wan2.1's do: after training, normally
    or after an error, the same pipeline generates exactly what it did before (the U-Net's text encoder is moved
    and brought back, not dropped)."""
    import warnings

    from smrabooth.backbones import BACKBONES
    from smrabooth.backbones.zeroscope import UnetGenerateConfig

    warnings.filterwarnings("ignore", message=".*TextToVideoSDPipeline has been deprecated.*")
    name, kind = case.rsplit("-", 1)
    pipe = BACKBONES[name].build_tiny()
    video = (UnetGenerateConfig(prompt="a V* ball", frames=2, height=64, width=64, steps=2, seed=1)
             if name == "zeroscope" else VIDEO)
    fresh = generate(pipe, video, progress=False).frames
    before = denoiser_snapshot(pipe)
    if name == "zeroscope":
        import test_unet

        subject_tests.make_subject_folder(tmp_path / "subject")
        motion_tests.make_motion_folder(tmp_path / "motion")
        if kind == "subject":
            test_unet.train_unet_subject(test_unet.subject_config(tmp_path, steps=2), pipe, build_tiny_dinov2(),
                                         model_id="tiny", progress=False)
        else:
            test_unet.train_unet_motion(test_unet.motion_config(tmp_path, steps=1), pipe, motion_tests.tiny_flow_model(),
                                        model_id="tiny", progress=False)
    else:
        subject_tests.make_subject_folder(tmp_path / "subject")
        subject_tests.train(tmp_path, pipe, steps=2, gradient_checkpointing=True)
    assert denoiser_snapshot(pipe) == before
    np.testing.assert_array_equal(generate(pipe, video, progress=False).frames, fresh)


def test_cast_borrowed_gives_back_the_exact_values():
    """A VAE trained in bf16 (the `official` recipe: the authors' one pipeline dtype) is the user's fp32 VAE again
    afterwards, to the bit: a cast down and up would round every weight."""
    import torch

    from smrabooth.train.borrow import cast_borrowed

    module = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    module[1].running_mean.copy_(torch.tensor([0.1, 1 / 3, 1e-3]))
    params = {n: p for n, p in module.named_parameters()}
    before = {n: t.clone() for n, t in module.state_dict().items()}
    assert any(not torch.equal(t.to(torch.bfloat16).float(), t) for t in before.values() if t.is_floating_point())
    with cast_borrowed(module, torch.bfloat16):
        assert {t.dtype for t in module.state_dict().values() if t.is_floating_point()} == {torch.bfloat16}
        module.eval()(torch.randn(1, 2, 5, 5, dtype=torch.bfloat16))  # runs in bf16
    after = module.state_dict()
    assert all(after[n].dtype == t.dtype and torch.equal(after[n], t) for n, t in before.items())
    assert all(p is params[n] for n, p in module.named_parameters())  # the same parameter objects


def test_motion_training_runs_the_vae_in_its_dtype_and_gives_it_back(tmp_path, fresh_frames):
    """vae_dtype bf16: the clip is encoded and MoRA decodes in bf16; afterwards the pipeline is as it was."""
    import torch

    motion_tests.make_motion_folder(tmp_path / "motion")
    pipe, flow_model = build_tiny_wan_pipeline(), motion_tests.tiny_flow_model()
    before = snapshot(pipe, flow_model)
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.append(next(m.parameters()).dtype))
             for m in (pipe.vae.encoder, pipe.vae.decoder)]
    motion_tests.train(tmp_path, pipe, flow_model, steps=1, vae_dtype="bf16", cache_dir=str(tmp_path / "c"))
    for hook in hooks:
        hook.remove()
    assert set(seen) == {torch.bfloat16} and len(seen) >= 2  # encoded and decoded (MoRA) in bf16
    assert_as_fresh(pipe, before, fresh_frames, flow_model)


def test_vae_dtype_auto_is_the_transformers():
    """`official`'s auto: the VAE in the transformer's dtype (bf16 on a GPU, as the authors' pipeline); fp32 with
    a fp32 transformer (the CPU's), so nothing changes there."""
    import torch

    from smrabooth.train.common import training_vae_dtype

    pipe = build_tiny_wan_pipeline()
    auto = motion_tests.MotionTrainConfig(vae_dtype="auto")
    assert training_vae_dtype(auto, pipe) == torch.float32
    pipe.transformer.to(torch.bfloat16)
    assert training_vae_dtype(auto, pipe) == torch.bfloat16
    assert training_vae_dtype(motion_tests.MotionTrainConfig(vae_dtype="fp16"), pipe) == torch.float16
    assert motion_tests.MotionTrainConfig.from_recipe("official").vae_dtype == "auto"
    assert motion_tests.MotionTrainConfig.from_recipe("paper").vae_dtype == "fp32"
