"""Wan2.2 training on tiny random models: TI2V-5B's Wan2.2 VAE in MoRA's differentiable decode, A14B's experts
each trained on their own side of the boundary (one LoRA file per expert, loaded by stock diffusers into that
expert), LoRA files of other tools' expert conventions, and the commands end to end on both forms."""

import json

import numpy as np
import pytest
import torch
from test_train_motion import make_motion_folder, tiny_flow_model
from test_train_subject import make_subject_folder

from smrabooth.backbones import BACKBONES, backbone_of
from smrabooth.errors import SmraboothError
from smrabooth.lora.files import load_lora, run_lora_files, save_lora
from smrabooth.models.dinov2 import build_tiny_dinov2
from smrabooth.train.subject import SubjectTrainConfig, train_subject


def subject_config(tmp_path, **kw):
    base = {"model": "tiny", "data": str(tmp_path / "subject"), "out": str(tmp_path / "s"), "steps": 2, "rank": 4, "alpha": 4,
                "lr": 1e-3, "resolution": 64, "projector_width": 16, "gradient_checkpointing": False, "checkpoint_every": 2,
                "save_dtype": "fp32", "cache_dir": str(tmp_path / "cache")}
    return SubjectTrainConfig.from_recipe("paper", **{**base, **kw})


def test_wan22_vae_window_decode_equals_stock_decode_with_gradients():
    """models/vae_decode.py runs the 48-channel Wan2.2 VAE (patchified, residual up-blocks): the checkpointed,
    frame-by-frame decode gives stock `vae.decode`'s video, and gradients reach the latents."""
    from smrabooth.models.vae_decode import decode_latents_differentiable, denormalize_latents

    vae = BACKBONES["wan2.2-ti2v"].build_tiny().vae.requires_grad_(False)
    z = torch.randn(1, 48, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        stock = vae.decode(denormalize_latents(vae, z)).sample
    for mode in ("frame", "block"):
        zz = z.clone().requires_grad_(True)
        ours = decode_latents_differentiable(vae, zz, checkpoint=mode)
        assert ours.shape == stock.shape == (1, 3, 9, 64, 64)
        torch.testing.assert_close(ours, stock, rtol=1e-4, atol=1e-5)
        ours.square().mean().backward()
        assert zz.grad.abs().sum() > 0


def test_a14b_trains_each_expert_on_its_own_side_of_the_boundary(tmp_path):
    """--expert both: each step runs the expert of the sigma it drew (t >= 875 high, below low), each expert gets
    its own LoRA file recording its expert, which stock diffusers loads into that expert; --expert high: only the
    high expert runs and trains, the low one waits on the CPU meanwhile and comes back untouched."""
    make_subject_folder(tmp_path / "subject")
    pipe = BACKBONES["wan2.2-a14b"].build_tiny()
    seen = {"high": [], "low": []}
    for expert, module in backbone_of(pipe).denoisers(pipe).items():
        module.register_forward_pre_hook(lambda m, a, kw, e=expert: seen[e].append(
            (float(a[1].flatten()[0]), next(m.parameters()).device.type)), with_kwargs=True)
    train_subject(subject_config(tmp_path, steps=8), pipe, build_tiny_dinov2(), model_id="tiny", progress=False)
    assert seen["high"] and seen["low"]
    assert min(t for t, _ in seen["high"]) >= 875 > max(t for t, _ in seen["low"])
    files = run_lora_files(tmp_path / "s", "subject")
    assert [f.name for f in files] == ["subject_lora_high.safetensors", "subject_lora_low.safetensors"]
    high, low = (load_lora(f) for f in files)
    assert (high.info["expert"], low.info["expert"]) == ("high", "low")
    assert any(not torch.equal(high.tensors[k], low.tensors[k]) for k in high.tensors)
    # stock diffusers loads each file into its expert: exactly our tensors, the low one into transformer_2
    from peft.utils import get_peft_model_state_dict

    stock = BACKBONES["wan2.2-a14b"].build_tiny()
    stock.load_lora_weights(str(files[0]), adapter_name="s")
    stock.load_lora_weights(str(files[1]), adapter_name="s", load_into_transformer_2=True)
    for module, lora in ((stock.transformer, high), (stock.transformer_2, low)):
        loaded = get_peft_model_state_dict(module, adapter_name="s")
        assert loaded.keys() == lora.tensors.keys() and all(torch.equal(loaded[k], v) for k, v in lora.tensors.items())
    # a checkpoint holds both experts' LoRAs: --resume continues the run
    train_subject(subject_config(tmp_path, steps=10), pipe, build_tiny_dinov2(), model_id="tiny", resume=True,
                  progress=False)
    assert [r["step"] for r in map(json.loads, (tmp_path / "s" / "log.jsonl").read_text().splitlines())][-3:] == [8, 9, 10]

    seen = {"high": [], "low": []}
    low_before = {k: v.clone() for k, v in pipe.transformer_2.state_dict().items()}
    parked = []  # the low expert is parked (frozen, on the CPU) while the high one trains
    pipe.transformer.register_forward_pre_hook(
        lambda m, a: parked.append(not any(p.requires_grad for p in pipe.transformer_2.parameters())))
    train_subject(subject_config(tmp_path, steps=4, expert="high", out=str(tmp_path / "h")), pipe, build_tiny_dinov2(),
                  model_id="tiny", progress=False)
    assert len(seen["high"]) == 4 and not seen["low"] and min(t for t, _ in seen["high"]) >= 875 and all(parked)
    assert [f.name for f in run_lora_files(tmp_path / "h", "subject")] == ["subject_lora_high.safetensors"]
    assert all(torch.equal(low_before[k], v) for k, v in pipe.transformer_2.state_dict().items())
    assert not getattr(pipe.transformer_2, "peft_config", None) and not getattr(pipe.transformer, "peft_config", None)
    with pytest.raises(SmraboothError, match="--expert 'middle': choose high, low, both"):
        subject_config(tmp_path, expert="middle").validate()
    with pytest.raises(SmraboothError, match="Wan2.1 has one denoiser; --expert is for Wan2.2 A14B"):
        train_subject(subject_config(tmp_path, expert="low", out=str(tmp_path / "x")), BACKBONES["wan2.1"].build_tiny(),
                      build_tiny_dinov2(), model_id="tiny", progress=False)
    assert not (tmp_path / "x").exists()


def test_expert_files_convert_to_comfyui_and_diffsynth_and_back(tmp_path, capsys):
    """ComfyUI and DiffSynth-Studio keep one file per Wan2.2 A14B expert with Wan2.1's keys and name the expert in
    the file (or folder) name; our metadata keeps it across conversions, and a foreign file's name gives it."""
    from conftest import make_random_lora
    from safetensors.torch import load_file, save_file

    from smrabooth.cli import main

    pipe = BACKBONES["wan2.2-a14b"].build_tiny()
    lora = make_random_lora(pipe.transformer_2, seed=3, kind="motion")
    lora.info["expert"] = "low"
    ours = save_lora(tmp_path / "motion_lora_low.safetensors", lora)
    for fmt in ("comfyui", "diffsynth"):
        out = tmp_path / f"{fmt}.safetensors"
        assert main(["lora", "convert", str(ours), str(out), "--to", fmt]) == 0
        assert "low-noise expert" in capsys.readouterr().out
        assert load_lora(out).info["expert"] == "low"
        # the same tensors without our metadata, named as the tool names them
        foreign = tmp_path / fmt / "Wan2.2-T2V-A14B_low_noise_lora" / "epoch-4.safetensors"
        foreign.parent.mkdir(parents=True)
        save_file(load_file(out), str(foreign))
        back = load_lora(foreign)
        assert back.info["expert"] == "low" and back.info["source_format"] == fmt
        assert all(torch.allclose(back.tensors[k].float() * back.alpha / back.rank,
                                  lora.tensors[k].float() * (lora.alpha / lora.rank if "lora_B" in k else 1))
                   or "lora_A" in k for k in lora.tensors)
    plain = tmp_path / "plain.safetensors"
    save_file(load_file(tmp_path / "comfyui.safetensors"), str(plain))
    assert "expert" not in load_lora(plain).info
    assert main(["lora", "convert", str(plain), str(tmp_path / "hi.safetensors"), "--to", "diffusers",
                 "--expert", "high"]) == 0
    assert load_lora(tmp_path / "hi.safetensors").info["expert"] == "high"
    capsys.readouterr()
    assert main(["lora", "info", str(ours)]) == 0
    assert "expert:       low noise (Wan2.2 A14B)" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["wan2.2-a14b", "wan2.2-ti2v"])
def test_commands_end_to_end_on_a_tiny_wan22_folder(kind, tmp_path, capsys):
    """tiny-model, train-subject, train-motion and generate with both LoRAs, on a saved tiny Wan2.2 folder."""
    from smrabooth.cli import main
    from smrabooth.models.searaft import save_searaft

    model = tmp_path / "model"
    assert main(["tiny-model", "--kind", kind, "--out", str(model)]) == 0
    make_subject_folder(tmp_path / "subject")
    make_motion_folder(tmp_path / "motion")
    build_tiny_dinov2().save_pretrained(tmp_path / "dino")
    save_searaft(tiny_flow_model(), tmp_path / "searaft")
    common = ["--model", str(model), "--dtype", "fp32", "--cache-dir", str(tmp_path / "cache"), "--quiet",
              "--steps", "1", "--rank", "4", "--alpha", "4", "--recipe", "paper", "--no-gradient-checkpointing"]
    assert main(["train-subject", *common, "--data", str(tmp_path / "subject"), "--out", str(tmp_path / "s"),
                 "--resolution", "64", "--encoder", str(tmp_path / "dino"), "--projector-width", "16"]) == 0
    # MoRA through the Wan2.2 VAE on TI2V (SEA-RAFT needs 128 px); A14B's VAE is Wan2.1's: without MoRA, small
    motion = (["--flow-model", str(tmp_path / "searaft"), "--frames", "9", "--height", "128", "--width", "128",
               "--window", "2", "--window-stride", "1", "--drop-frames", "1"] if kind == "wan2.2-ti2v" else
              ["--no-mora", "--frames", "5", "--height", "32", "--width", "32"])
    assert main(["train-motion", *common, "--data", str(tmp_path / "motion"), "--out", str(tmp_path / "m"),
                 "--fps", "15", *motion]) == 0
    subject, motion = run_lora_files(tmp_path / "s", "subject"), run_lora_files(tmp_path / "m", "motion")
    assert len(subject) == len(motion) == (2 if kind == "wan2.2-a14b" else 1)
    printed = capsys.readouterr().out
    assert all(f"wrote {f}" in printed for f in subject + motion)
    out = tmp_path / "v.mp4"
    assert main(["generate", "--model", str(model), "--dtype", "fp32", "--prompt", "a V* ball S* sliding",
                 "--frames", "5", "--height", "64", "--width", "64", "--steps", "2", "--subject-lora",
                 *map(str, subject), "--motion-lora", *map(str, motion), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and BACKBONES[kind].title in printed
    # the recipe every file records (one per expert on A14B) picks the preset
    assert "preset paper: the recipe the subject and motion LoRAs were trained with" in printed
    config = json.loads((model / "model_index.json").read_text())
    assert (config.get("boundary_ratio") is not None) == (kind == "wan2.2-a14b")
    assert bool(config.get("expand_timesteps")) == (kind == "wan2.2-ti2v")
    if kind == "wan2.2-ti2v":  # its VAE and patch need multiples of 32: refused before anything loads
        assert main(["generate", "--model", str(model), "--prompt", "x", "--height", "48", "--out", str(out)]) == 2
        assert "--height 48: Wan2.2 TI2V-5B needs a multiple of 32" in capsys.readouterr().err
    else:
        with pytest.raises(SystemExit, match="2"):  # argparse's choices: refused while parsing
            main(["train-subject", *common, "--data", str(tmp_path / "subject"), "--out", str(tmp_path / "x"),
                  "--expert", "middle"])
        assert "--expert: invalid choice: 'middle'" in capsys.readouterr().err and not (tmp_path / "x").exists()


# ---------------------------------------------------------------- the demo, the app and reproduce on Wan2.2
def test_reproduce_trains_and_generates_on_a_tiny_a14b(tmp_path):
    """`smrabooth reproduce` on a Wan2.2 A14B folder: each LoRA job's outputs are its per-expert files (one with
    --expert high), and the generation jobs load the pipeline through its backbone with both files."""
    from smrabooth.reproduce import ReproduceConfig, plan, run

    data = tmp_path / "data"
    make_subject_folder(data / "subject_customized" / "ball")
    make_motion_folder(data / "motion_customized" / "video" / "glide", n_frames=12)
    BACKBONES["wan2.2-a14b"].build_tiny().save_pretrained(tmp_path / "model")
    build_tiny_dinov2().save_pretrained(tmp_path / "dinov2")
    common = f"--steps 1 --rank 4 --alpha 4 --no-gradient-checkpointing --save-dtype fp32 --cache-dir {tmp_path / 'c'}"
    cfg = ReproduceConfig(
        data=str(data), model=str(tmp_path / "model"), out=str(tmp_path / "exp"), methods=("no_mora",),
        recipe="paper", offline=True, generate_args="--frames 5 --height 32 --width 32 --steps 2",
        subject_args=f"{common} --resolution 64 --projector-width 16 --encoder {tmp_path / 'dinov2'} --expert high",
        motion_args=f"{common} --frames 5 --height 32 --width 32")
    jobs = {j.name: j for j in plan(cfg)}
    assert jobs["loras/dit/subject/ball-sura"].extra["finals"] == ["subject_lora_high.safetensors"]
    assert jobs["loras/dit/motion/glide-plain"].extra["finals"] == ["motion_lora_high.safetensors",
                                                                    "motion_lora_low.safetensors"]
    assert run(cfg, stage="train", log=lambda *a: None) == 0 and run(cfg, stage="generate", log=lambda *a: None) == 0
    assert len(list((tmp_path / "exp").rglob("*.mp4"))) == 1


def test_app_generate_job_takes_both_expert_files_of_a_run(tmp_path):
    """The web app's generate job on a Wan2.2 A14B model: the model loads through its backbone, and a run's file of
    one expert brings the other expert's file (the result differs from the video without LoRAs)."""
    from conftest import make_random_lora

    from smrabooth.video import read_video
    from smrabooth_ui.profile import wan_profile
    from smrabooth_ui.tasks import generate_task
    from smrabooth_ui.workdir import Workdir

    pipe = BACKBONES["wan2.2-a14b"].build_tiny()
    pipe.save_pretrained(tmp_path / "model")
    work = tmp_path / "work"
    (work / "runs" / "s").mkdir(parents=True)
    for expert, module in backbone_of(pipe).denoisers(pipe).items():
        lora = make_random_lora(module, seed=len(expert), kind="subject", scale=0.5)
        lora.info["expert"] = expert
        save_lora(work / "runs" / "s" / f"subject_lora_{expert}.safetensors", lora)
    config = {"prompt": "a V* dog", "frames": 5, "height": 32, "width": 32, "steps": 2}
    job = {"id": "g", "params": {"config": config, "out": "videos/g", "subject_lora": "runs/s/subject_lora_high.safetensors",
                                 "baseline": True}}
    written = generate_task(job, wan_profile(str(tmp_path / "model"), "cpu"), Workdir(work))
    result, baseline = (read_video(written[k]).frames.astype(int) for k in ("result", "baseline"))
    assert result.shape == baseline.shape and np.abs(result - baseline).max() > 5


def test_demo_runs_on_a_wan22_a14b_bundle(tmp_path, monkeypatch):
    """`smrabooth demo` on an SMRA-Sprites bundle whose model is a Wan2.2 A14B: it loads through the backbone, trains
    both experts' LoRAs and writes them beside the videos."""
    import copy

    from diffusers import WanPipeline

    from smrabooth.cli import main
    from smrabooth_sprites.bundle import build_sprites_models, save_bundle

    monkeypatch.setenv("SMRABOOTH_CACHE", str(tmp_path / "cache"))
    models = build_sprites_models("tiny")
    p = models.pipe
    low = copy.deepcopy(p.transformer)
    with torch.no_grad():
        for w in low.parameters():
            w.add_(torch.randn_like(w) * 0.02)
    models.pipe = WanPipeline(tokenizer=p.tokenizer, text_encoder=p.text_encoder, vae=p.vae, transformer=p.transformer,
                              transformer_2=low, scheduler=p.scheduler, boundary_ratio=0.875)
    bundle = save_bundle(models, tmp_path / "bundle")
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(bundle), "--out", str(out), "--subject-steps", "1", "--motion-steps", "1",
                 "--gen-steps", "1", "--no-motion-fidelity", "--no-progress"]) == 0
    for name in ("subject_lora_high", "subject_lora_low", "motion_lora_high", "motion_lora_low"):
        assert load_lora(out / f"{name}.safetensors").info["expert"] == name.rsplit("_", 1)[1]
    assert (out / "result.mp4").is_file() and (out / "report.html").is_file()
