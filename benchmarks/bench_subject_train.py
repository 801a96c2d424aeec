"""Subject-LoRA training speed and memory at the real Wan2.1-1.3B size (random weights).

    python benchmarks/bench_subject_train.py --steps 300 --baseline-steps 20

"ours" runs `smrabooth.train.subject.train_subject` end to end (caching, SuRA with a DINOv2-giant-sized
encoder, checkpoints) on a 512x512 image at rank 32; "baseline" is a plain diffusers + peft loop: the
same transformer in fp32, a peft LoRA of the same rank on the same layers, AdamW, the flow-matching
MSE, no autocast and no gradient checkpointing. The text encoder is a one-layer umT5 of the real width
(its size does not affect the training step, which uses cached embeddings). Every variant starts from
the same seeded random weights; the relative difference of each variant's LoRA to the first one's is
printed (e.g. `--variants nockpt-noamp-compile,nockpt-noamp-cudagraphs` checks that CUDA graphs train
the same LoRA).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def wan_13b_pipeline(device, dtype):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from smrabooth.models.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    te = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), d_model=4096, d_kv=64, d_ff=256, num_layers=1,
                                     num_heads=64, pad_token_id=0, eos_token_id=1)).to(device, dtype)
    vae = AutoencoderKLWan().to(device, torch.float32)
    tr = WanTransformer3DModel(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30,
                               text_dim=4096, freq_dim=256).to(device, dtype)
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = WanPipeline(tokenizer=tok, text_encoder=te, vae=vae, transformer=tr, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def dinov2_giant(device):
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, mlp_ratio=4,
                       use_swiglu_ffn=True, patch_size=14, image_size=518)
    return Dinov2Model(cfg).to(device, torch.bfloat16).eval().requires_grad_(False)


def subject_folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:600, :640]
    disk = (xx - 320) ** 2 + (yy - 300) ** 2 < 180**2
    img = (np.random.default_rng(0).random((600, 640, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(root / "images" / "0.png")
    Image.fromarray((disk * 255).astype(np.uint8)).save(root / "masks" / "0.png")
    (root / "metadata.csv").write_text("file_name,text\n0.png,a picture of V* dog\n")
    return root


def run_ours(steps: int, gradient_checkpointing: bool, tmp: Path, device, compile: bool = False,
             mixed_precision: str = "auto", cuda_graphs: bool = False) -> dict:
    from smrabooth.train.subject import SubjectTrainConfig, train_subject

    torch.manual_seed(0)  # the same random weights in every variant, so their LoRAs can be compared
    with torch.device(device):  # random init on the GPU: on the CPU it takes longer than the training
        pipe = wan_13b_pipeline(device, torch.bfloat16)
        encoder = dinov2_giant(device)
    torch.cuda.reset_peak_memory_stats()
    tag = f"{int(gradient_checkpointing)}{int(compile)}{mixed_precision}{'cudagraphs' if cuda_graphs else ''}"
    cfg = SubjectTrainConfig(model="bench-1.3b", data=str(subject_folder(tmp / f"data{tag}")),
                             out=str(tmp / f"run{tag}"), steps=steps, rank=32, alpha=32, compile=compile,
                             cuda_graphs=cuda_graphs,
                             mixed_precision=mixed_precision,
                             resolution=512, gradient_checkpointing=gradient_checkpointing,
                             checkpoint_every=max(steps, 1), cache_dir=str(tmp / "cache"))
    t0 = time.time()  # a user's wall time from here: captions, caching, LoRA setup, the loop, saving
    train_subject(cfg, pipe, encoder, model_id="bench-1.3b", progress=False)
    total = time.time() - t0
    log = [json.loads(ln) for ln in (Path(cfg.out) / "log.jsonl").read_text().splitlines()]
    secs = np.diff([0.0] + [r["seconds"] for r in log])
    return {"steps": steps, "wall_s": total, "loop_s": log[-1]["seconds"],
            "s_per_step": float(np.median(secs[min(10, steps // 2):])),
            "phases_s": json.loads((Path(cfg.out) / "timings.json").read_text()),
            "loss_first10": float(np.mean([r["loss"] for r in log[:10]])),
            "loss_last50": float(np.mean([r["loss"] for r in log[-50:]])),
            "lora": str(Path(cfg.out) / "subject_lora.safetensors"),
            "peak_GiB": torch.cuda.max_memory_allocated() / 2**30}


def run_baseline(steps: int, device) -> dict:
    from peft import LoraConfig

    from smrabooth.lora.targets import ALL_LAYER_TYPES, module_suffixes

    with torch.device(device):
        pipe = wan_13b_pipeline(device, torch.float32)
    tr = pipe.transformer
    with torch.no_grad():
        emb, _ = pipe.encode_prompt("a picture of V* dog", do_classifier_free_guidance=False, device=device)
    pipe.text_encoder = None
    tr.requires_grad_(False)
    tr.add_adapter(LoraConfig(r=32, lora_alpha=32, target_modules=module_suffixes(ALL_LAYER_TYPES)))
    params = [p for p in tr.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    z0 = torch.randn(1, 16, 1, 64, 64, device=device)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.time()
        sigma = torch.rand(1, device=device)
        noise = torch.randn_like(z0)
        u = tr((1 - sigma) * z0 + sigma * noise, sigma * 1000, emb, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(u, noise - z0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        times.append(time.time() - t0)
    warm = min(3, steps // 2)  # the first steps pay for cuBLAS/allocator warm-up
    return {"steps": steps, "s_per_step": float(np.median(times[warm:])),
            "peak_GiB": torch.cuda.max_memory_allocated() / 2**30}


def compare_loras(paths: list[str]) -> None:
    """Relative difference of each variant's LoRA to the first one's (same weights, data and seed)."""
    from safetensors.torch import load_file

    if len(paths) < 2:
        return
    ref = load_file(paths[0])
    den = sum(float(v.float().norm() ** 2) for v in ref.values())
    for p in paths[1:]:
        other = load_file(p)
        num = sum(float((other[k].float() - v.float()).norm() ** 2) for k, v in ref.items())
        print(f"LoRA relative difference to {Path(paths[0]).parent.name}: {Path(p).parent.name} "
              f"{(num / den) ** 0.5:.4f}")


VARIANTS = {  # name -> (gradient checkpointing, compile, mixed precision[, CUDA graphs])
    "ckpt": (True, False, "auto"), "nockpt": (False, False, "auto"), "nockpt-compile": (False, True, "auto"),
    "nockpt-noamp": (False, False, "no"), "nockpt-noamp-compile": (False, True, "no"),
    "ckpt-noamp-compile": (True, True, "no"),
    "nockpt-noamp-cudagraphs": (False, True, "no", True),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300, help="steps of each 'ours' variant")
    ap.add_argument("--baseline-steps", type=int, default=20)
    ap.add_argument("--variants", default="ckpt,nockpt-noamp-compile", help=",".join(VARIANTS))
    args = ap.parse_args()
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_steps:
            results["baseline"] = run_baseline(args.baseline_steps, device)
        for name in args.variants.split(","):
            torch.cuda.empty_cache()
            ckpt, comp, amp, *graphs = VARIANTS[name]
            results[name] = run_ours(args.steps, ckpt, Path(tmp), device, compile=comp, mixed_precision=amp,
                                     cuda_graphs=bool(graphs and graphs[0]))
            print(name, json.dumps(results[name]), flush=True)
        compare_loras([r["lora"] for r in results.values() if "lora" in r])
    base = results["baseline"]["s_per_step"] if "baseline" in results else float("nan")
    print(json.dumps(results, indent=1))
    print(f"{'variant':24s} {'s/step':>8s} {'speedup':>8s} {'peak GiB':>9s} {'300 steps (s)':>14s} {'loop s':>7s} {'wall s':>7s}")
    for k, r in results.items():
        print(f"{k:24s} {r['s_per_step']:8.3f} {base / r['s_per_step']:8.2f} {r['peak_GiB']:9.1f} "
              f"{300 * r['s_per_step']:14.1f} {r.get('loop_s', 0):7.1f} {r.get('wall_s', 0):7.1f}")


if __name__ == "__main__":
    main()
