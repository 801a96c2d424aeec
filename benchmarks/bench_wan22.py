"""Wan2.2 at the real sizes with random weights: training s/step and peak memory of both trainers against a plain
diffusers + peft step, and generation s/step against stock `WanPipeline`.

    python benchmarks/bench_wan22.py              # GPU (one H200 or H100 80GB), every row, about 5-7 min
    python benchmarks/bench_wan22.py --tiny       # CPU, the tiny Wan2.2 models (a check of the script)
    python benchmarks/bench_wan22.py --rows ti2v-subject,ti2v-subject-plain   # some rows

Models (random weights, bf16; their shapes are the real checkpoints' configs):
- TI2V-5B: WanTransformer3DModel, 30 blocks, width 3072 (24 heads x 128), FFN 14336, 48 latent channels in and
  out, patch 1x2x2, text width 4096, `expand_timesteps`; the Wan2.2 VAE (base 160, decoder base 256, z 48,
  12 patchified channels in and out, 16x spatial / 4x temporal, residual blocks).
- A14B: two experts of 40 blocks, width 5120 (40 heads x 128), FFN 13824, 16 channels, boundary_ratio 0.875;
  Wan2.1's VAE. Training trains ONE expert (`--expert high`), the trainer parks the other on the CPU; the
  generation rows hold both experts on the GPU, or with `--offload` one at a time.
- Text encoder: a one-layer umT5 of the real width (4096); it encodes the captions once, and the real
  umT5-XXL (11 GB in bf16) would be on the CPU during training. SuRA's encoder is DINOv2-giant-sized (1536 wide,
  2 of its 40 layers: it runs once per image, before training); MoRA's SEA-RAFT is spring-M-sized.

Rows (s/step: the median step after the first two; peak: torch.cuda.max_memory_allocated over the row):
  <model>-subject        `train_subject`, paper recipe: rank 32 on the six layer types, 512x512 image as one
                         frame, masked flow loss + SuRA after block 1, gradient checkpointing, bf16 autocast
  <model>-subject-plain  a plain diffusers + peft step on the same LoRA, shapes, checkpointing and autocast:
                         `add_adapter(LoraConfig)`, the flow-matching MSE, AdamW (no mask, no SuRA)
  <model>-motion         `train_motion`, paper recipe: rank 64, 49 frames at 576x320, flow loss + MoRA on a
                         6-latent window decoded through the model's VAE (checkpointed per block), SEA-RAFT
  <model>-motion-plain   the plain step at the motion shapes (no MoRA)
  <model>-gen-stock      stock `WanPipeline.__call__`, 49 frames at 832x480, CFG, output_type latent
  <model>-gen-ours       `smrabooth.sampling.sample_video` with two random rank-32/64 LoRAs merged (sparse
                         injection, the T_point switch), same settings
  a14b-gen-offload       ours with `--offload`: one expert on the GPU at a time (the other waits on the CPU)
Writes the rows as JSON to --out (a .json path, or a folder for results.json; default $OUT); the table is printed
last.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from bench_official_train import Device  # CUDA sync and peak memory; nothing on the CPU

TI2V = {"num_layers": 30, "num_attention_heads": 24, "attention_head_dim": 128, "ffn_dim": 14336,
        "in_channels": 48, "out_channels": 48, "text_dim": 4096, "freq_dim": 256, "patch_size": (1, 2, 2),
        "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024}
A14B = {**TI2V, "num_layers": 40, "num_attention_heads": 40, "ffn_dim": 13824, "in_channels": 16, "out_channels": 16}
WAN22_VAE = {"base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
             "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16,
             "scale_factor_temporal": 4, "is_residual": True, "temperal_downsample": [False, True, True],
             "latents_mean": [0.0] * 48, "latents_std": [1.0] * 48}  # statistics do not change the cost
ROWS = [f"{m}-{r}" for m in ("ti2v", "a14b") for r in ("subject", "subject-plain", "motion", "motion-plain",
                                                        "gen-stock", "gen-ours")] + ["a14b-gen-offload"]
SIZES = {"real": {"res": 512, "frames": 49, "height": 320, "width": 576, "gen_frames": 49, "gen_height": 480,
                  "gen_width": 832},
         "tiny": {"res": 64, "frames": 9, "height": 128, "width": 128, "gen_frames": 9, "gen_height": 64,
                  "gen_width": 64}}  # SEA-RAFT needs 128 px


def build_pipeline(model: str, tiny: bool, dev: Device):
    """A WanPipeline of the real Wan2.2 form `model` (ti2v, a14b) with random bf16 weights, built on the device."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from smrabooth.models.tiny import build_tiny_tokenizer, build_tiny_wan22_pipeline

    torch.manual_seed(0)
    if tiny:
        pipe = build_tiny_wan22_pipeline(model).to(dev.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    dtype = torch.bfloat16
    tok = build_tiny_tokenizer()
    with torch.device(dev.device):
        te = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), d_model=4096, d_kv=64, d_ff=256, num_layers=1,
                                         num_heads=64, pad_token_id=0, eos_token_id=1)).to(dtype)
        vae = (AutoencoderKLWan(**WAN22_VAE) if model == "ti2v" else AutoencoderKLWan()).float()
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # 14B parameters are created in bf16, never in fp32 first
        try:
            experts = [WanTransformer3DModel(**(TI2V if model == "ti2v" else A14B)) for _ in
                       range(1 if model == "ti2v" else 2)]
        finally:
            torch.set_default_dtype(default)
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                    flow_shift=5.0 if model == "ti2v" else 12.0)
    extra = {"expand_timesteps": True} if model == "ti2v" else {"transformer_2": experts[1], "boundary_ratio": 0.875}
    pipe = WanPipeline(tokenizer=tok, text_encoder=te, vae=vae, transformer=experts[0], scheduler=sched, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def encoders(tiny: bool, dev: Device):
    from transformers import Dinov2Config, Dinov2Model

    from smrabooth.models.searaft import SEARAFT, SEARAFT_M, SEARAFT_TINY

    torch.manual_seed(0)
    if tiny:
        from smrabooth.models.dinov2 import build_tiny_dinov2

        return build_tiny_dinov2().to(dev.device), SEARAFT(SEARAFT_TINY).to(dev.device).eval()
    dino = Dinov2Model(Dinov2Config(hidden_size=1536, num_hidden_layers=2, num_attention_heads=24, mlp_ratio=4,
                                    use_swiglu_ffn=True, patch_size=14, image_size=518))
    return (dino.to(dev.device, torch.bfloat16).eval().requires_grad_(False),
            SEARAFT(SEARAFT_M).to(dev.device).eval().requires_grad_(False))


def data(root: Path, size: dict) -> tuple[Path, Path]:
    """A subject folder (one noise image with a disk mask) and a motion folder whose clip is handed to the trainer
    directly (a panning texture; no video codec needed on the GPU machine)."""
    from PIL import Image

    from smrabooth.train import motion

    rng = np.random.default_rng(0)
    subject = root / "subject"
    (subject / "images").mkdir(parents=True, exist_ok=True)
    (subject / "masks").mkdir(exist_ok=True)
    yy, xx = np.mgrid[:600, :640]
    Image.fromarray((rng.random((600, 640, 3)) * 255).astype(np.uint8)).save(subject / "images" / "0.png")
    Image.fromarray((((xx - 320) ** 2 + (yy - 300) ** 2 < 180**2) * 255).astype(np.uint8)).save(subject / "masks" / "0.png")
    (subject / "metadata.csv").write_text("file_name,text\n0.png,a picture of V* dog\n")
    clip = root / "motion"
    clip.mkdir(exist_ok=True)
    (clip / "0.mp4").write_bytes(b"synthetic")  # never decoded: load_motion_frames is replaced
    (clip / "metadata.csv").write_text("file_name,text\n0.mp4,a dog S* running\n")
    f, h, w = size["frames"], size["height"], size["width"]
    base = torch.rand(3, h, w + 2 * f, generator=torch.Generator().manual_seed(0))
    frames = torch.stack([base[:, :, 2 * k: 2 * k + w] for k in range(f)])
    motion.load_motion_frames = lambda *a, **k: frames
    return subject, clip


def place_idle_expert(pipe, device) -> None:
    """A14B's low-noise expert on `device`: the CPU for the training rows (they train the high-noise one) and the
    offload row, the GPU for the other generation rows. Moved only when it is elsewhere (28 GB a move), so the rows
    in their order (training, then generation) move it twice."""
    idle = getattr(pipe, "transformer_2", None)
    if idle is not None and next(idle.parameters()).device != torch.device(device):
        idle.to(device)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def median_step(run_dir: Path) -> float:
    log = [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines()]
    secs = np.diff([0.0] + [r["seconds"] for r in log])
    return float(np.median(secs[min(2, len(secs) - 1):]))


def train_row(model: str, stage: str, pipe, dino, flow, tmp: Path, size: dict, steps: int, dev: Device) -> dict:
    from smrabooth.train.motion import MotionTrainConfig, train_motion
    from smrabooth.train.subject import SubjectTrainConfig, train_subject

    subject, clip = data(tmp / "data", size)
    out = tmp / f"run-{model}-{stage}"
    common = {"model": f"bench-{model}", "out": str(out), "steps": steps, "checkpoint_every": steps,
              "cache_dir": str(tmp / "cache"), "expert": "high" if model == "a14b" else None}
    place_idle_expert(pipe, "cpu")  # --expert high: the low-noise expert waits on the CPU (as the trainer parks it)
    dev.reset_peak()
    t0 = time.time()
    if stage == "subject":
        cfg = SubjectTrainConfig.from_recipe("paper", data=str(subject), resolution=size["res"], **common)
        train_subject(cfg, pipe, dino, model_id=f"bench-{model}", progress=False)
    else:
        cfg = MotionTrainConfig.from_recipe("paper", data=str(clip), frames=size["frames"], height=size["height"],
                                            width=size["width"], fps=16, **common)
        if size["frames"] < 21:  # the tiny check's short clip: a window that fits it
            cfg.window, cfg.drop_frames = 2, 2
        train_motion(cfg, pipe, flow, model_id=f"bench-{model}", flow_id="bench-searaft", progress=False)
    dev.sync()
    return {"s_per_step": median_step(out), "peak_GiB": dev.peak_gib(), "wall_s": round(time.time() - t0, 1),
            "phases_s": json.loads((out / "timings.json").read_text())}


def plain_row(model: str, stage: str, pipe, size: dict, steps: int, dev: Device) -> dict:
    """A plain diffusers + peft LoRA step on the trained denoiser (the high-noise expert on A14B, the other parked on
    the CPU), with our trainers' memory settings: gradient checkpointing, bf16 autocast, fp32 LoRA weights."""
    from peft import LoraConfig

    from smrabooth.lora.inject import PeftState

    device = dev.device
    tr = pipe.transformer
    place_idle_expert(pipe, "cpu")
    before = PeftState(tr)  # the transformer comes back without peft's layers for the next rows
    tr.requires_grad_(False)
    rank = 32 if stage == "subject" else 64
    targets = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]
    tr.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets), adapter_name="plain")
    params = [p for p in tr.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    tr.enable_gradient_checkpointing()
    tr.train()
    opt = torch.optim.AdamW(params, lr=1e-4)
    vs, ts = pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal
    if stage == "subject":
        shape = (1, tr.config.in_channels, 1, size["res"] // vs, size["res"] // vs)
    else:
        shape = (1, tr.config.in_channels, (size["frames"] - 1) // ts + 1, size["height"] // vs, size["width"] // vs)
    g = torch.Generator(device="cpu").manual_seed(0)
    z0 = torch.randn(shape, generator=g).to(device)
    text = torch.randn(1, 512, tr.config.text_dim, generator=g).to(device, tr.dtype)
    dev.reset_peak()
    times = []
    for _ in range(steps):
        t0 = time.time()
        sigma = torch.rand(1, generator=g).to(device)
        if getattr(pipe.config, "boundary_ratio", None) is not None:  # the high-noise expert's range
            sigma = pipe.config.boundary_ratio + (1 - pipe.config.boundary_ratio) * sigma
        noise = torch.randn(shape, generator=g).to(device)
        z_t = (1 - sigma) * z0 + sigma * noise
        t = sigma * 1000
        if pipe.config.expand_timesteps:  # one timestep per 2x2 latent patch, as WanPipeline gives TI2V-5B
            t = (torch.ones(shape[2:], device=device)[:, ::2, ::2] * t).flatten()[None]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dev.cuda):
            u = tr(z_t.to(tr.dtype), t.to(tr.dtype), text, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(u.float(), noise - z0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dev.sync()
        times.append(time.time() - t0)
    del opt, params
    before.restore()
    tr.disable_gradient_checkpointing()
    tr.eval()
    return {"s_per_step": float(np.median(times[min(2, len(times) - 1):])), "peak_GiB": dev.peak_gib()}


def random_lora(transformer, rank: int, seed: int):
    """A LoRA with small random A and B on every block's six layer types (bf16)."""
    from smrabooth.lora.files import LoraWeights, base_model_info
    from smrabooth.lora.targets import ALL_LAYER_TYPES, LAYER_TYPES

    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for i, block in enumerate(transformer.blocks):
        for suffix in (s for t in ALL_LAYER_TYPES for s in LAYER_TYPES[t]):
            linear = block.get_submodule(suffix)
            tensors[f"blocks.{i}.{suffix}.lora_A.weight"] = (torch.randn(rank, linear.in_features, generator=g)
                                                            * 0.01).bfloat16()
            tensors[f"blocks.{i}.{suffix}.lora_B.weight"] = (torch.randn(linear.out_features, rank, generator=g)
                                                            * 0.01).bfloat16()
    return LoraWeights(tensors, rank, float(rank), {"base": base_model_info(transformer.config)})


def gen_row(model: str, kind: str, pipe, size: dict, steps: int, dev: Device) -> dict:
    """Stock WanPipeline or our sampler (two random LoRAs merged; with `--offload` one expert at a time), timed per
    step with the pipelines' step callbacks; latents out (the decode is the same VAE call in both)."""
    from smrabooth.backbones import backbone_of
    from smrabooth.sampling import GenerateConfig, attach_loras, detach_loras, sample_video

    marks = []
    kw = {"frames": size["gen_frames"], "height": size["gen_height"], "width": size["gen_width"], "steps": steps, "seed": 0}
    # offload: as `generate --offload` loads it, the low-noise expert waits on the CPU
    place_idle_expert(pipe, "cpu" if kind == "offload" else dev.device)
    dev.reset_peak()
    if kind == "stock":
        def mark(p, i, t, kwargs):
            dev.sync()
            marks.append(time.time())
            return {}

        pipe(prompt="a dog running", num_frames=kw["frames"], height=kw["height"], width=kw["width"],
             num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="latent",
             callback_on_step_end=mark)
    else:
        cfg = GenerateConfig(prompt="a dog running", lora_mode="merged", offload=kind == "offload", **kw)
        backbone = backbone_of(pipe)
        subject = [random_lora(m, 32, seed=1) for m in backbone.denoisers(pipe).values()]
        motion = [random_lora(m, 64, seed=2) for m in backbone.denoisers(pipe).values()]
        for files in (subject, motion):
            for expert, lora in zip(backbone.denoisers(pipe), files):
                lora.info["expert"] = expert
        loras = attach_loras(pipe, cfg, subject, motion, mode="merged")
        try:
            sample_video(pipe, cfg, loras, progress=False, output_type="latent",
                         on_step=lambda i, s: (dev.sync(), marks.append(time.time())))
        finally:
            detach_loras(pipe, loras)
    dev.sync()
    marks.append(time.time())
    secs = np.diff(marks)
    return {"s_per_step": float(np.median(secs[min(1, len(secs) - 1):])), "peak_GiB": dev.peak_gib(),
            "steps_total_s": round(marks[-1] - marks[0], 2)}  # with an expert's move to the GPU, under --offload


def write_results(out: str | None, device_name: str, tiny: bool, results: dict) -> Path | None:
    """The rows so far as JSON at `out` (a .json path, or a folder for results.json); None: nowhere."""
    if not out:
        return None
    path = Path(out) if out.endswith(".json") else Path(out) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"device": device_name, "tiny": tiny, "rows": results}, indent=1) + "\n")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="the tiny Wan2.2 models on the CPU (a check of the script)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma list of rows (default: all: {', '.join(ROWS)})")
    ap.add_argument("--steps", type=int, default=6, help="training steps per trainer row")
    ap.add_argument("--plain-steps", type=int, default=6, help="steps of a plain diffusers + peft row")
    ap.add_argument("--gen-steps", type=int, default=6, help="denoising steps per generation row")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=os.environ.get("OUT"),
                    help="where the results go: a .json path, or a folder for results.json (default: $OUT)")
    args = ap.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    dev = Device(torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")))
    size = SIZES["tiny" if args.tiny else "real"]
    device_name = torch.cuda.get_device_name() if dev.cuda else "cpu"
    print(f"device: {device_name}, torch {torch.__version__}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for model in ("ti2v", "a14b"):
            mine = [r for r in rows if r.startswith(model)]
            if not mine:
                continue
            t0 = time.time()
            pipe = build_pipeline(model, args.tiny, dev)
            dino, flow = encoders(args.tiny, dev)
            print(f"{model}: built in {time.time() - t0:.0f}s", flush=True)
            for row in mine:
                stage = row[len(model) + 1:]
                t0 = time.time()
                try:
                    if stage in ("subject", "motion"):
                        results[row] = train_row(model, stage, pipe, dino, flow, tmp, size, args.steps, dev)
                    elif stage.endswith("-plain"):
                        results[row] = plain_row(model, stage[:-6], pipe, size, args.plain_steps, dev)
                    else:
                        results[row] = gen_row(model, stage[4:], pipe, size, args.gen_steps, dev)
                except torch.OutOfMemoryError as e:
                    torch.cuda.empty_cache()
                    results[row] = {"error": f"OOM ({str(e).splitlines()[0][:80]})"}
                except Exception as e:  # noqa: BLE001  (one broken row must not lose the others of a GPU run)
                    traceback.print_exc()
                    results[row] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
                print(f"{row}: {results[row]} ({time.time() - t0:.0f}s)", flush=True)
                write_results(args.out, device_name, args.tiny, results)  # a process killed later keeps this row
            del pipe, dino, flow
            if dev.cuda:
                torch.cuda.empty_cache()
    if args.out:
        print(f"wrote {write_results(args.out, device_name, args.tiny, results)}", flush=True)
    print("\n| row | s/step | vs plain / stock | peak GiB |\n|---|---:|---:|---:|")
    for row, r in results.items():
        if "error" in r:
            print(f"| {row} | {r['error']} | | |")
            continue
        model, stage = row.split("-", 1)
        ref = results.get(f"{model}-{stage}-plain") if stage in ("subject", "motion") else \
            results.get(f"{model}-gen-stock") if stage.startswith("gen-") else None
        ratio = f"{r['s_per_step'] / ref['s_per_step']:.2f}" if ref and "s_per_step" in ref else ""
        print(f"| {row} | {r['s_per_step']:.3f} | {ratio} | {r['peak_GiB']:.1f} |")


if __name__ == "__main__":
    main()
