"""U-Net variant (ZeroScope) training speed and memory at the real zeroscope_v2_576w size (random weights).

    python benchmarks/bench_unet_train.py                       # GPU: subject + motion, ours and baseline
    python benchmarks/bench_unet_train.py --size tiny --steps 2 --baseline-steps 2   # CPU smoke test

"ours" runs `smrabooth.train.unet.train_unet_subject` / `train_unet_motion` end to end (caching, checkpoints,
log) at the paper's U-Net settings: subject LoRA (rank 32) in the spatial transformers on a 512x512 image as a
one-frame video with the masked epsilon loss + RAA-SuRA (DINOv2-giant-sized encoder, RAA on the mid block);
motion LoRA (rank 64) in the temporal transformers on a 24-frame 576x320 clip with the epsilon loss + MoRA
(16-frame window decoded frame by frame with gradients, SEA-RAFT spring-M size). "baseline" is a plain
diffusers + peft loop on the same U-Net: the same LoRA, AdamW, the plain epsilon MSE, bf16 autocast, no
alignment loss, no checkpointing. Variants `ckpt` / `nockpt` switch our per-block gradient checkpointing.
The U-Net is UNet3DConditionModel with zeroscope_v2_576w's config (block_out_channels 320/640/1280/1280,
cross_attention_dim 1024, 64 heads), the VAE Stable Diffusion's AutoencoderKL, the text encoder a one-layer
CLIP of the real width (1024; it only encodes the captions once). A run that runs out of memory is reported
as OOM. The table is printed last; results.json goes to $OUT (or --out) when set.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

warnings.filterwarnings("ignore", message=".*deprecated.*")


def zeroscope_pipeline(size: str, device, dtype):
    """A TextToVideoSDPipeline with random weights: the real 576w sizes, or the tests' tiny ones."""
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from smrabooth.models.tiny import build_tiny_tokenizer
    from smrabooth.models.unet import ZEROSCOPE_SCHEDULER_CONFIG, build_tiny_zeroscope_pipeline, build_zeroscope_unet

    if size == "tiny":
        return build_tiny_zeroscope_pipeline().to(device)
    tok = build_tiny_tokenizer()
    tok.model_max_length = 77
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=1024, intermediate_size=4096,
                                      num_hidden_layers=1, num_attention_heads=16, max_position_embeddings=77,
                                      pad_token_id=0, bos_token_id=1, eos_token_id=1)).to(device, dtype)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        scaling_factor=0.18215).to(device, torch.float32)
    pipe = TextToVideoSDPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=build_zeroscope_unet(dtype, device),
                                 scheduler=DDIMScheduler(**ZEROSCOPE_SCHEDULER_CONFIG))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def encoders(size: str, device):
    """DINOv2-giant-sized encoder and SEA-RAFT spring-M-sized flow model (random), or tiny ones."""
    from transformers import Dinov2Config, Dinov2Model

    from smrabooth.models.searaft import SEARAFT, SEARAFT_M, SEARAFT_TINY

    if size == "tiny":
        from smrabooth.models.dinov2 import build_tiny_dinov2

        return build_tiny_dinov2().to(device), SEARAFT(SEARAFT_TINY).to(device).eval()
    dino = Dinov2Model(Dinov2Config(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, mlp_ratio=4,
                                    use_swiglu_ffn=True, patch_size=14, image_size=518))
    return dino.to(device, torch.bfloat16).eval().requires_grad_(False), SEARAFT(SEARAFT_M).to(device).eval()


def data(root: Path, frames: int, height: int, width: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    subject = root / "subject"
    (subject / "images").mkdir(parents=True)
    (subject / "masks").mkdir()
    yy, xx = np.mgrid[:600, :640]
    Image.fromarray((rng.random((600, 640, 3)) * 255).astype(np.uint8)).save(subject / "images" / "0.png")
    disk = (xx - 320) ** 2 + (yy - 300) ** 2 < 180**2
    Image.fromarray((disk * 255).astype(np.uint8)).save(subject / "masks" / "0.png")
    (subject / "metadata.csv").write_text("file_name,text\n0.png,a picture of V* dog\n")
    motion = root / "motion"
    motion.mkdir()
    clip = np.zeros((frames + 2, height, width, 3), np.uint8)
    for k in range(len(clip)):  # a textured square moving right
        clip[k, height // 3 : height // 3 + height // 4, 8 + 6 * k : 8 + 6 * k + height // 4] = 220
    # the clip is handed to the trainer directly (no video codec needed on the GPU machine; decoding is not
    # what is measured): the file is a placeholder, load_motion_frames returns these frames
    (motion / "0.mp4").write_bytes(b"synthetic")
    import smrabooth.data.motion as motion_data

    frames_tensor = torch.from_numpy(clip[:frames]).permute(0, 3, 1, 2).float() / 255.0
    motion_data.load_motion_frames = lambda *a, **k: frames_tensor
    (motion / "metadata.csv").write_text("file_name,text\n0.mp4,a square S* sliding right\n")
    return subject, motion


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def step_time(log_path: Path, steps: int) -> float:
    log = [json.loads(ln) for ln in log_path.read_text().splitlines()]
    secs = np.diff([0.0] + [r["seconds"] for r in log])
    return float(np.median(secs[min(3, steps // 2):]))


def run_ours(stage: str, args, tmp: Path, device, ckpt: bool) -> dict:
    from smrabooth.train.unet import UnetMotionConfig, UnetSubjectConfig, train_unet_motion, train_unet_subject

    torch.manual_seed(0)
    with torch.device(device):
        pipe = zeroscope_pipeline(args.size, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
        dino, flow = encoders(args.size, device)
    subject, motion = data(tmp / f"data-{stage}-{ckpt}", args.frames, args.height, args.width)
    reset_peak(device)
    out = tmp / f"run-{stage}-{ckpt}"
    common = dict(model="bench-zeroscope", out=str(out), steps=args.steps, checkpoint_every=max(args.steps, 1),
                  gradient_checkpointing=ckpt, cache_dir=str(tmp / "cache"))
    t0 = time.time()
    if stage == "subject":
        cfg = UnetSubjectConfig(data=str(subject), resolution=args.resolution, rank=32, alpha=32,
                                projector_width=2048 if args.size == "real" else 32,
                                encoder_grid=32 if args.size == "real" else 4, **common)
        train_unet_subject(cfg, pipe, dino, model_id="bench-zeroscope", progress=False)
    else:
        cfg = UnetMotionConfig(data=str(motion), frames=args.frames, height=args.height, width=args.width, fps=8,
                               window=args.window, window_stride=4, rank=64, alpha=64, **common)
        train_unet_motion(cfg, pipe, flow, model_id="bench-zeroscope", flow_id="bench-searaft", progress=False)
    return {"s_per_step": step_time(out / "log.jsonl", args.steps), "peak_GiB": peak_gib(device),
            "wall_s": time.time() - t0, "phases_s": json.loads((out / "timings.json").read_text())}


def run_baseline(stage: str, args, device) -> dict:
    """A plain diffusers + peft loop: the same LoRA, AdamW, the epsilon MSE, autocast; nothing else."""
    from peft import LoraConfig, inject_adapter_in_model

    from smrabooth.lora.unet import target_pattern

    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        pipe = zeroscope_pipeline(args.size, device, dtype)
    unet = pipe.unet.requires_grad_(False)
    rank = 32 if stage == "subject" else 64
    location = "spatial" if stage == "subject" else "temporal"
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=target_pattern(location)), unet)
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
        p.data = p.data.float()
    with torch.no_grad():
        emb, _ = pipe.encode_prompt("a picture of V* dog", device, 1, False)
    opt = torch.optim.AdamW(params, lr=1e-4)
    shape = ((1, 4, 1, args.resolution // 8, args.resolution // 8) if stage == "subject"
             else (1, 4, args.frames, args.height // 8, args.width // 8))
    z0 = torch.randn(shape, device=device)
    abar = pipe.scheduler.alphas_cumprod.to(device)
    reset_peak(device)
    times = []
    for _ in range(args.baseline_steps):
        t0 = time.time()
        t = torch.randint(1000, (1,), device=device)
        noise = torch.randn_like(z0)
        z_t = abar[t].sqrt() * z0 + (1 - abar[t]).sqrt() * noise
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            eps = unet(z_t.to(dtype), t, encoder_hidden_states=emb, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(eps.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.time() - t0)
    warm = min(3, args.baseline_steps // 2)
    return {"s_per_step": float(np.median(times[warm:])), "peak_GiB": peak_gib(device)}


def guarded(fn, *a) -> dict:
    try:
        return fn(*a)
    except torch.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        return {"error": f"OOM ({str(e).splitlines()[0][:80]})"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["real", "tiny"], default="real")
    ap.add_argument("--device", default=None, help="default: cuda if available")
    ap.add_argument("--steps", type=int, default=20, help="steps of each 'ours' run")
    ap.add_argument("--baseline-steps", type=int, default=10)
    ap.add_argument("--stages", default="subject,motion")
    ap.add_argument("--variants", default="ckpt,nockpt", help="ckpt, nockpt (our per-block gradient checkpointing)")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for results.json (default $OUT)")
    args = ap.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.size == "real":
        args.resolution, args.frames, args.height, args.width, args.window = 512, 24, 320, 576, 16
    else:
        args.resolution, args.frames, args.height, args.width, args.window = 64, 6, 128, 144, 4
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            if args.baseline_steps:
                results[f"{stage}/baseline"] = guarded(run_baseline, stage, args, device)
                print(stage, "baseline", json.dumps(results[f"{stage}/baseline"]), flush=True)
            for variant in args.variants.split(","):
                results[f"{stage}/{variant}"] = guarded(run_ours, stage, args, Path(tmp), device, variant == "ckpt")
                print(stage, variant, json.dumps(results[f"{stage}/{variant}"]), flush=True)
    meta = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "size": args.size,
            "torch": torch.__version__, "subject": f"{args.resolution}x{args.resolution}, 1 frame, rank 32",
            "motion": f"{args.frames}x{args.width}x{args.height}, MoRA window {args.window}, rank 64"}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(json.dumps(meta))
    print(f"{'run':22s} {'s/step':>8s} {'vs baseline':>11s} {'peak GiB':>9s}")
    for name, r in results.items():
        base = results.get(name.split("/")[0] + "/baseline", {}).get("s_per_step")
        if "error" in r:
            print(f"{name:22s} {r['error']}")
            continue
        ratio = f"{r['s_per_step'] / base:11.2f}x" if base else f"{'':>12s}"
        peak = f"{r['peak_GiB']:9.1f}" if r["peak_GiB"] is not None else f"{'-':>9s}"
        print(f"{name:22s} {r['s_per_step']:8.3f} {ratio} {peak}")


if __name__ == "__main__":
    main()
