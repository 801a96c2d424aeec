"""The `smrabooth` command end to end on the tiny model saved to disk, and its bad-input messages."""

import json

import numpy as np
import pytest
import torch
from conftest import make_random_lora
from PIL import Image

from smrabooth.cli import main
from smrabooth.lora.files import load_lora, save_lora
from smrabooth.video import read_video

ARGS = ["--frames", "9", "--height", "32", "--width", "48", "--steps", "3", "--seed", "2", "--dtype", "fp32"]


def run_cli(*argv):
    return main([str(a) for a in argv])


def test_generate_cli_matches_stock_pipeline(tiny_model_dir, tmp_path):
    from diffusers import WanPipeline

    out = tmp_path / "video.mp4"
    rc = run_cli("generate", "--model", tiny_model_dir, "--prompt", "a V* dog", *ARGS, "--out", out,
                 "--save-frames", tmp_path / "frames")
    assert rc == 0
    frames = np.stack([np.array(Image.open(p)) for p in sorted((tmp_path / "frames").glob("*.png"))])
    stock = WanPipeline.from_pretrained(tiny_model_dir)(
        prompt="a V* dog", num_frames=9, height=32, width=48, num_inference_steps=3,
        generator=torch.Generator().manual_seed(2), output_type="np").frames[0]
    stock = (np.clip(stock, 0, 1) * 255).round().astype(np.uint8)
    assert frames.shape == stock.shape == (9, 32, 48, 3)
    assert np.abs(frames.astype(int) - stock.astype(int)).max() <= 1
    clip = read_video(out)  # a real H.264 mp4 with the right frame count and size
    assert clip.frames.shape == (9, 32, 48, 3) and abs(clip.fps - 16) < 1e-6


def test_generate_cli_with_loras_and_preset(tiny_model_dir, tmp_path, capsys):
    from diffusers import WanTransformer3DModel

    tr = WanTransformer3DModel.from_pretrained(tiny_model_dir / "transformer")
    subject = make_random_lora(tr, seed=1, kind="subject")
    subject.info["token"] = "sks"  # trained on the authors' captions ("A picture of sks dog")
    s = save_lora(tmp_path / "s.safetensors", subject)
    m = save_lora(tmp_path / "m.safetensors", make_random_lora(tr, seed=2, kind="motion"), fmt="comfyui")
    rc = run_cli("generate", "--model", tiny_model_dir, "--subject-lora", s, "--motion-lora", m, "--preset", "paper",
                 "--prompt", "a V* dog doing S*", "--frames", "5", "--height", "32", "--width", "32", "--steps", "10",
                 "--dtype", "fp32", "--out", tmp_path / "v.mp4")
    assert rc == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "the subject LoRA was trained on captions with 'sks' but the prompt has no 'sks'" in captured.err
    assert "motion LoRA" not in captured.err  # no token recorded in it: nothing to check
    # paper preset, 10 Euler steps: switch where sigma is nearest the paper's step 15 of 50 -> step 3
    assert "sparse injection, subject 0.5->1.0 at step 3, motion 1.0" in out and "15 fps" in out
    assert read_video(tmp_path / "v.mp4").frames.shape[0] == 5


def test_generate_cli_config_file(tiny_model_dir, tmp_path):
    cfg = tmp_path / "gen.yaml"
    cfg.write_text("prompt: a red ball\nframes: 5\nheight: 32\nwidth: 32\nsteps: 2\n")
    assert run_cli("generate", "--model", tiny_model_dir, "--config", cfg, "--dtype", "fp32",
                   "--out", tmp_path / "v.mp4") == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("promt: typo\n")
    assert run_cli("generate", "--model", tiny_model_dir, "--config", bad, "--out", tmp_path / "w.mp4") == 2


@pytest.mark.parametrize("argv, message", [
    (["--frames", "10"], "--frames 10 is not 4k+1"),
    (["--height", "40"], "--height 40: must be a multiple of 16"),
    (["--t-point", "9", "--steps", "3"], "--t-point 9: must be a whole number in [0, 3]"),
    (["--out-through-file"], "is a file, not a folder"),
    (["--bad-model"], "is not a Wan diffusers model"),
    (["--bad-lora"], "is not a Wan LoRA"),
])
def test_generate_bad_input_one_line_errors(tiny_model_dir, tmp_path, capsys, argv, message):
    base = {"--model": str(tiny_model_dir), "--prompt": "a dog", "--out": str(tmp_path / "v.mp4")}
    extra = list(argv)
    if extra == ["--out-through-file"]:
        (tmp_path / "file").write_text("x")
        base["--out"], extra = str(tmp_path / "file" / "v.mp4"), []
    elif extra == ["--bad-model"]:
        base["--model"], extra = str(tmp_path), []
    elif extra == ["--bad-lora"]:
        from safetensors.torch import save_file

        save_file({"foo.weight": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
        extra = ["--subject-lora", str(tmp_path / "x.safetensors")]
    flat = [x for kv in base.items() for x in kv]
    rc = run_cli("generate", *flat, "--frames", "9", "--height", "32", "--width", "32", *extra)
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_lora_info_and_convert_cli(tiny_pipe, tmp_path, capsys):
    src = save_lora(tmp_path / "s.safetensors", make_random_lora(tiny_pipe.transformer, rank=4, alpha=4.0))
    assert run_cli("lora", "info", src) == 0
    assert "rank:         4" in capsys.readouterr().out
    for fmt in ("comfyui", "diffsynth", "diffusers"):
        dst = tmp_path / f"{fmt}.safetensors"
        assert run_cli("lora", "convert", src, dst, "--to", fmt) == 0
        back = load_lora(dst)
        assert back.info["source_format"] == fmt
        assert all(torch.equal(back.tensors[k], v) for k, v in load_lora(src).tensors.items())
    capsys.readouterr()
    assert run_cli("lora", "convert", src, tmp_path / "comfyui.safetensors", "--to", "comfyui") == 2
    assert "--overwrite" in capsys.readouterr().err


def test_tiny_model_cli_and_load(tmp_path):
    from smrabooth.models.wan import load_wan_pipeline

    assert run_cli("tiny-model", "--out", tmp_path / "m") == 0
    index = json.loads((tmp_path / "m" / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    pipe = load_wan_pipeline(tmp_path / "m", dtype="bf16", vae_dtype="fp32", device="cpu")
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    # diffusers keeps the modules it lists in fp32 (norms, time embedding) even in a bf16 load
    assert pipe.transformer.scale_shift_table.dtype == torch.float32
    # the default "auto" is fp32 on the CPU (bf16 matmuls are slow there), bf16 on a GPU
    assert load_wan_pipeline(tmp_path / "m", device="cpu").transformer.dtype == torch.float32
    assert run_cli("tiny-model", "--out", tmp_path / "m") == 2  # refuses to overwrite
