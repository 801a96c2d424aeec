"""The U-Net variant on a tiny ZeroScope (TextToVideoSDPipeline): RAA, epsilon z0, trainers, LoRA files, the
injection schedule, and the three commands end to end (frames against the stock pipeline: test_backbones.py)."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_train_motion import make_motion_folder, tiny_flow_model
from test_train_subject import make_subject_folder

from smrabooth.align.raa import RAABlock, direct_sura_loss, raa_sura_loss
from smrabooth.errors import SmraboothError
from smrabooth.lora.unet import (
    add_unet_adapter,
    check_unet_lora_fits,
    load_unet_lora,
    location_of,
    remove_adapters,
    save_unet_lora,
    unet_lora_from_peft,
)
from smrabooth.models.dinov2 import build_tiny_dinov2
from smrabooth.models.unet import TinyZeroScopeConfig, build_tiny_zeroscope_pipeline
from smrabooth.train.common import read_log
from smrabooth.train.unet import (
    UnetMotionConfig,
    UnetSubjectConfig,
    add_noise,
    block_of,
    epsilon_z0,
    train_unet_motion,
    train_unet_subject,
    unet_motion_losses,
)

warnings.filterwarnings("ignore", message=".*TextToVideoSDPipeline has been deprecated.*")


@pytest.fixture
def zs_pipe():
    return build_tiny_zeroscope_pipeline()


def subject_config(tmp_path, **kw):
    base = dict(model="tiny", data=str(tmp_path / "subject"), out=str(tmp_path / "run"), steps=4, rank=4, alpha=4,
                lr=1e-3, resolution=64, encoder_grid=4, projector_width=32, checkpoint_every=2, save_dtype="fp32",
                cache_dir=str(tmp_path / "cache"))
    return UnetSubjectConfig(**{**base, **kw})


def motion_config(tmp_path, **kw):
    base = dict(model="tiny", data=str(tmp_path / "motion"), out=str(tmp_path / "mrun"), steps=2, rank=4, alpha=4,
                lr=1e-3, frames=4, height=128, width=144, fps=15, window=3, window_stride=1, checkpoint_every=1,
                save_dtype="fp32", cache_dir=str(tmp_path / "cache"))
    return UnetMotionConfig(**{**base, **kw})


# ---------------------------------------------------------------- RAA
def test_raa_loss_equals_hand_computation_on_unequal_grids():
    torch.manual_seed(0)
    block = RAABlock(unet_dim=5, encoder_dim=3, width=8)
    features = torch.randn(1, 5, 2, 3)  # U-Net map: 2x3 = 6 positions (N)
    encoder = torch.randn(1, 2, 2, 3)  # DINOv2 grid: 2x2 = 4 tokens (K), d = 3
    hidden = features.permute(0, 2, 3, 1).reshape(6, 5)
    y = encoder.reshape(4, 3)
    q = block.projector(hidden).detach()
    relation = torch.softmax(q @ y.T / math.sqrt(3), dim=-1)
    fused = relation @ y
    target = F.interpolate(encoder.permute(0, 3, 1, 2), size=(2, 3), mode="bilinear",
                           align_corners=False).permute(0, 2, 3, 1).reshape(6, 3)
    by_hand = -np.mean([float(fused[n] @ target[n] / (fused[n].norm() * target[n].norm())) for n in range(6)])
    assert float(raa_sura_loss(block, features, encoder)) == pytest.approx(by_hand, abs=1e-6)
    x, r = block(hidden[None], y[None])
    assert x.shape == (1, 6, 3) and r.shape == (1, 6, 4)
    assert torch.allclose(r.sum(-1), torch.ones(1, 6))
    # w/o RAA: the projected U-Net feature itself is compared, position by position
    direct = -np.mean([float(q[n] @ target[n] / (q[n].norm() * target[n].norm())) for n in range(6)])
    assert float(direct_sura_loss(block, features, encoder)) == pytest.approx(direct, abs=1e-6)
    assert abs(by_hand - direct) > 1e-3


def test_sura_gradient_reaches_only_the_subject_lora_and_projector(zs_pipe):
    unet, vae = zs_pipe.unet, zs_pipe.vae
    dino = build_tiny_dinov2()
    lora = add_unet_adapter(unet, "subject", 4, 4.0, "spatial", seed=0)
    for p in lora:  # peft's B starts at zero, which would stop the gradient at A
        p.data.normal_(0, 0.1)
    block, dim = block_of(unet, "mid")
    raa = RAABlock(dim, dino.config.hidden_size, 16)
    hidden = {}
    block.register_forward_hook(lambda m, i, o: hidden.__setitem__("h", o))
    with torch.no_grad():
        z0 = vae.encode(torch.rand(1, 3, 64, 64) * 2 - 1).latent_dist.mode()[:, :, None]
        from smrabooth.models.dinov2 import dinov2_patch_features

        tokens = dinov2_patch_features(dino, torch.rand(1, 3, 64, 64), (4, 4))
    emb = torch.randn(1, 77, 32)
    unet(z0, torch.tensor([500]), encoder_hidden_states=emb)
    raa_sura_loss(raa, hidden["h"], tokens).backward()
    named = dict(unet.named_parameters())
    lora_grads = {n: p.grad for n, p in named.items() if "lora_" in n}
    assert all(location_of(n) == "spatial" for n in lora_grads)
    # the mid block's output depends on the down and mid spatial LoRAs, not on the up blocks'
    assert any(g is not None and g.abs().sum() > 0 for n, g in lora_grads.items() if n.startswith("mid_block"))
    assert any(g is not None and g.abs().sum() > 0 for n, g in lora_grads.items() if n.startswith("down_blocks"))
    assert all(g is None for n, g in lora_grads.items() if n.startswith("up_blocks"))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in raa.parameters())
    assert all(p.grad is None for n, p in named.items() if "lora_" not in n)
    assert all(p.grad is None for p in [*vae.parameters(), *dino.parameters()])


# ---------------------------------------------------------------- epsilon parameterisation
def test_epsilon_z0_is_the_schedulers_pred_original_sample(zs_pipe):
    sched = type(zs_pipe.scheduler).from_config(zs_pipe.scheduler.config)
    sched.set_timesteps(50)
    g = torch.Generator().manual_seed(0)
    z0, eps, z_t = (torch.randn(1, 4, 3, 5, 6, generator=g) for _ in range(3))
    for t in (sched.timesteps[3], sched.timesteps[30]):
        abar = sched.alphas_cumprod[t]
        ours = epsilon_z0(z_t, eps, abar)
        theirs = sched.step(eps, t, z_t).pred_original_sample
        assert torch.allclose(ours, theirs, atol=1e-5)
        assert torch.allclose(add_noise(z0, eps, abar), sched.add_noise(z0, eps, t.reshape(1)), atol=1e-6)
        assert torch.allclose(epsilon_z0(add_noise(z0, eps, abar), eps, abar), z0, atol=1e-4)


# ---------------------------------------------------------------- training
def test_subject_training_resumes_exactly_and_writes_a_spatial_lora(tmp_path):
    make_subject_folder(tmp_path / "subject")
    whole = train_unet_subject(subject_config(tmp_path, out=str(tmp_path / "a")), build_tiny_zeroscope_pipeline(),
                               build_tiny_dinov2(), model_id="tiny", progress=False)
    train_unet_subject(subject_config(tmp_path, out=str(tmp_path / "b"), steps=2), build_tiny_zeroscope_pipeline(),
                       build_tiny_dinov2(), model_id="tiny", progress=False)
    resumed = train_unet_subject(subject_config(tmp_path, out=str(tmp_path / "b")), build_tiny_zeroscope_pipeline(),
                                 build_tiny_dinov2(), model_id="tiny", resume=True, progress=False)
    log_a, log_b = read_log(tmp_path / "a" / "log.jsonl"), read_log(tmp_path / "b" / "log.jsonl")
    assert [r["step"] for r in log_b] == [1, 2, 3, 4]
    assert [(r["region"], r["sura"]) for r in log_a] == [(r["region"], r["sura"]) for r in log_b]
    a, b = load_unet_lora(whole), load_unet_lora(resumed)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert a.info["kind"] == "subject" and a.info["raa"] and {location_of(m) for m in a.modules} == {"spatial"}
    assert a.layer_types == ("q", "k", "v", "o", "ffn.0", "ffn.2")
    assert (tmp_path / "a" / "raa.safetensors").is_file()
    assert any(b.tensors[k].abs().sum() > 0 for k in b.tensors if "lora_B" in k)  # it trained


def test_no_sura_and_no_raa_change_the_loss(tmp_path):
    make_subject_folder(tmp_path / "subject")
    kw = dict(steps=1, checkpoint_every=1)
    off = train_unet_subject(subject_config(tmp_path, out=str(tmp_path / "off"), use_sura=False, **kw),
                             build_tiny_zeroscope_pipeline(), None, model_id="tiny", progress=False)
    train_unet_subject(subject_config(tmp_path, out=str(tmp_path / "direct"), use_raa=False, **kw),
                       build_tiny_zeroscope_pipeline(), build_tiny_dinov2(), model_id="tiny", progress=False)
    train_unet_subject(subject_config(tmp_path, out=str(tmp_path / "raa"), **kw),
                       build_tiny_zeroscope_pipeline(), build_tiny_dinov2(), model_id="tiny", progress=False)
    assert "sura" not in read_log(tmp_path / "off" / "log.jsonl")[0]
    direct, raa = read_log(tmp_path / "direct" / "log.jsonl")[0], read_log(tmp_path / "raa" / "log.jsonl")[0]
    assert direct["region"] == raa["region"] and direct["sura"] != raa["sura"]
    assert load_unet_lora(off).info["sura"] is False


def test_motion_training_resumes_exactly_and_gradients_reach_only_the_temporal_lora(tmp_path):
    make_motion_folder(tmp_path / "motion")
    flow = tiny_flow_model()
    whole = train_unet_motion(motion_config(tmp_path, out=str(tmp_path / "a")), build_tiny_zeroscope_pipeline(), flow,
                              model_id="tiny", flow_id="tinyflow", progress=False)
    train_unet_motion(motion_config(tmp_path, out=str(tmp_path / "b"), steps=1), build_tiny_zeroscope_pipeline(), flow,
                      model_id="tiny", flow_id="tinyflow", progress=False)
    resumed = train_unet_motion(motion_config(tmp_path, out=str(tmp_path / "b")), build_tiny_zeroscope_pipeline(),
                                flow, model_id="tiny", flow_id="tinyflow", resume=True, progress=False)
    log_a, log_b = read_log(tmp_path / "a" / "log.jsonl"), read_log(tmp_path / "b" / "log.jsonl")
    assert [(r["temporal"], r["mora"]) for r in log_a] == [(r["temporal"], r["mora"]) for r in log_b]
    a, b = load_unet_lora(whole), load_unet_lora(resumed)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert a.info["kind"] == "motion" and {location_of(m) for m in a.modules} == {"temporal"}

    # one loss by hand: gradients reach the temporal LoRA through the frame decode and SEA-RAFT only
    pipe = build_tiny_zeroscope_pipeline()
    cfg = motion_config(tmp_path).validate()
    params = add_unet_adapter(pipe.unet, "motion", 4, 4.0, "temporal")
    for p in params:
        p.data.normal_(0, 0.1)
    g = torch.Generator().manual_seed(0)
    ex = {"latent": torch.randn(4, 4, 16, 18, generator=g), "flows": torch.randn(3, 2, 128, 144, generator=g)}
    abar = pipe.scheduler.alphas_cumprod[torch.tensor([300])]

    def flow_fn(a, b):
        from smrabooth.models.searaft import compute_flow

        return compute_flow(flow, a, b)

    losses = unet_motion_losses(cfg, pipe.unet, pipe.vae.requires_grad_(False), flow_fn, ex, torch.randn(1, 77, 32),
                                torch.tensor([300]), abar, torch.randn(1, 4, 4, 16, 18, generator=g), 1)
    losses["mora"].backward()
    named = dict(pipe.unet.named_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in named.items() if "lora_" in n)
    assert all(p.grad is None for n, p in named.items() if "lora_" not in n)
    assert all(p.grad is None for p in [*pipe.vae.parameters(), *flow.parameters()])


# ---------------------------------------------------------------- generation
def _random_lora(unet, kind, seed=0):
    from smrabooth.lora.unet import LOCATIONS

    params = add_unet_adapter(unet, kind, 4, 8.0, LOCATIONS[kind], seed=seed)
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.data = torch.randn(p.shape, generator=g) * 0.05
    lora = unet_lora_from_peft(unet, kind, kind)
    remove_adapters(unet)
    return lora


def test_sparse_schedule_sets_the_subject_scale_per_step(zs_pipe):
    from smrabooth.backbones.zeroscope import UnetGenerateConfig, generate_unet, t_point_for_timesteps

    subject = _random_lora(zs_pipe.unet, "subject")
    seen = []
    cfg = UnetGenerateConfig(prompt="a V* ball", frames=2, height=64, width=64, steps=4, t_point=2,
                             subject_scale_early=0.25)
    generate_unet(zs_pipe, cfg, subject, progress=False, on_step=lambda i, s: seen.append((i, s["subject"])))
    assert seen == [(0, 0.25), (1, 0.25), (2, 1.0), (3, 1.0)]
    # by noise level: the paper's flow step 15 of 50 (sigma 0.92, SNR 0.0074) is DDIM's first steps
    sched = type(zs_pipe.scheduler).from_config(zs_pipe.scheduler.config)
    sched.set_timesteps(50)
    assert t_point_for_timesteps(sched.timesteps, sched.alphas_cumprod) == 1


# ---------------------------------------------------------------- files and model kinds
def test_lora_files_and_mismatch_errors(tmp_path, zs_pipe, tiny_pipe):
    from conftest import make_random_lora

    from smrabooth.lora.files import load_lora, save_lora

    subject = _random_lora(zs_pipe.unet, "subject")
    path = save_unet_lora(tmp_path / "s.safetensors", subject)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert all(k.startswith("unet.") and ".attentions." in k for k in f.keys())
    back = load_unet_lora(path)
    assert back.rank == 4 and back.alpha == 8.0 and back.info["location"] == "spatial"
    with pytest.raises(SmraboothError, match="U-Net .ZeroScope. LoRA, but --model is a Wan model"):
        load_lora(path)
    wan = save_lora(tmp_path / "w.safetensors", make_random_lora(tiny_pipe.transformer))
    with pytest.raises(SmraboothError, match="is a Wan .DiT. LoRA, but --model is a ZeroScope U-Net"):
        load_unet_lora(wan)
    bigger = build_tiny_zeroscope_pipeline(TinyZeroScopeConfig(block_out_channels=(48, 64)))
    with pytest.raises(SmraboothError, match="another model size"):
        check_unet_lora_fits(back, bigger.unet, "s.safetensors")


def test_three_commands_end_to_end_on_a_saved_tiny_zeroscope(tmp_path, capsys):
    from smrabooth.cli import main
    from smrabooth.models.searaft import save_searaft

    model = tmp_path / "zeroscope"
    assert main(["tiny-model", "--kind", "zeroscope", "--out", str(model)]) == 0
    make_subject_folder(tmp_path / "subject")
    make_motion_folder(tmp_path / "motion")
    build_tiny_dinov2().save_pretrained(tmp_path / "dino")
    save_searaft(tiny_flow_model(), tmp_path / "searaft")
    common = ["--model", str(model), "--dtype", "fp32", "--cache-dir", str(tmp_path / "cache"), "--quiet",
              "--steps", "1", "--rank", "4", "--alpha", "4"]
    assert main(["train-subject", *common, "--data", str(tmp_path / "subject"), "--out", str(tmp_path / "s"),
                 "--resolution", "64", "--encoder", str(tmp_path / "dino"), "--projector-width", "16"]) == 0
    assert main(["train-motion", *common, "--data", str(tmp_path / "motion"), "--out", str(tmp_path / "m"),
                 "--flow-model", str(tmp_path / "searaft"), "--frames", "5", "--height", "128", "--width", "144",
                 "--fps", "15", "--window", "3", "--window-stride", "1"]) == 0
    s, m = tmp_path / "s" / "subject_lora.safetensors", tmp_path / "m" / "motion_lora.safetensors"
    gen = ["generate", "--model", str(model), "--prompt", "a V* ball S* sliding", "--frames", "3", "--height", "64",
           "--width", "64", "--steps", "2", "--dtype", "fp32"]
    assert main([*gen, "--subject-lora", str(s), "--motion-lora", str(m), "--out", str(tmp_path / "v.mp4")]) == 0
    assert (tmp_path / "v.mp4").is_file()
    capsys.readouterr()
    assert main(["lora", "info", str(m)]) == 0
    assert "motion (temporal layers)" in capsys.readouterr().out
    assert main([*gen, "--subject-layers", "q,k", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "applies to Wan models only" in capsys.readouterr().err
    assert main([*gen, "--subject-lora", str(tmp_path / "m" / "checkpoints" / "step-1" / "lora.safetensors"),
                 "--out", str(tmp_path / "x.mp4")]) == 2  # a checkpoint's bare peft keys are not a LoRA file
    capsys.readouterr()
    assert main(["train-subject", *common, "--data", str(tmp_path / "subject"), "--out", str(tmp_path / "s2"),
                 "--sura-layer", "2"]) == 2
    assert "--sura-layer applies to Wan models only" in capsys.readouterr().err
