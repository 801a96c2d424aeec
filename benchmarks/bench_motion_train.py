"""Motion-LoRA training speed and memory at the real Wan2.1-1.3B size (random weights).

    python benchmarks/bench_motion_train.py --steps 30 --variants mora,nomora

One training step of the paper's setting: 49 frames at 576x320 (13 latent frames), rank 64 on all six
layer types, MoRA on a 6-latent window through the real-config Wan VAE decoder and SEA-RAFT-M.

- "ours": `smrabooth.train.motion.train_motion` end to end (caching, checkpoints); variants: `mora`
  (default settings: gradient checkpointing in the DiT, the VAE decode checkpointed per latent frame
  and per decoder block, SEA-RAFT on all frame pairs at once, bf16 autocast), `nomora` (the same
  without MoRA). Options join with "-": `vaenone|vaeframe|vaeblock`, `chunkN` (SEA-RAFT pairs per
  checkpointed call, chunk0 = all at once, stored), `storeN` (the decode of the window's last N latent
  frames stored, not recomputed), `nodit` (no DiT checkpointing), `cudnn`
  (cudnn.benchmark), `compile`; e.g. `mora-vaeframe-chunk0` is the first version's setting.
- "baseline": a plain diffusers + peft step: bf16 transformer, peft LoRA of the same rank on the same
  layers, AdamW, flow-matching MSE, no checkpointing; `baseline-mora` adds MoRA the naive way (stock
  `vae.decode` of the window under autograd, SEA-RAFT on the decoded frames).
The clip is synthetic (random frames; video decoding is not what is measured).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_subject_train import wan_13b_pipeline  # noqa: E402

FRAMES, HEIGHT, WIDTH, RANK = 49, 320, 576, 64


def searaft_m(device):
    from smrabooth.models.searaft import SEARAFT, SEARAFT_M

    torch.manual_seed(0)
    return SEARAFT(SEARAFT_M).to(device).eval().requires_grad_(False)


def synthetic_frames() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(3, HEIGHT, WIDTH + 2 * FRAMES, generator=g)
    return torch.stack([base[:, :, 2 * k : 2 * k + WIDTH] for k in range(FRAMES)])  # panning texture


def motion_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "clip.mp4").write_bytes(b"synthetic")  # never decoded: load_motion_frames is replaced below
    (root / "metadata.csv").write_text("file_name,text\nclip.mp4,a person S* dribbling a basketball\n")
    return root


def run_ours(name: str, steps: int, tmp: Path, device) -> dict:
    from smrabooth.train import motion
    from smrabooth.train.motion import MotionTrainConfig, train_motion

    motion.load_motion_frames = lambda *a, **k: synthetic_frames()
    pipe = wan_13b_pipeline(device, torch.bfloat16)
    flow_model = searaft_m(device) if "nomora" not in name else None
    tokens = name.split("-")
    options = dict(compile="compile" in tokens, gradient_checkpointing="nodit" not in tokens)
    for mode in ("none", "frame", "block"):
        if f"vae{mode}" in tokens:
            options["vae_checkpointing"] = mode
    for t in tokens:
        if t.startswith("chunk"):
            options["flow_chunk"] = int(t[5:]) or None
        if t.startswith("store"):
            options["vae_store_frames"] = int(t[5:])
    torch.backends.cudnn.benchmark = "cudnn" in tokens
    cfg = MotionTrainConfig(model="bench-1.3b", data=str(motion_folder(tmp / f"data-{name}")),
                            out=str(tmp / f"run-{name}"), steps=steps, rank=RANK, alpha=RANK, frames=FRAMES,
                            height=HEIGHT, width=WIDTH, use_mora="nomora" not in tokens,
                            checkpoint_every=max(steps, 1), cache_dir=str(tmp / "cache"), **options)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    train_motion(cfg, pipe, flow_model, model_id="bench-1.3b", progress=False)
    total = time.time() - t0
    log = [json.loads(ln) for ln in (Path(cfg.out) / "log.jsonl").read_text().splitlines()]
    secs = np.diff([0.0] + [r["seconds"] for r in log])
    skip = min(5, steps // 2)
    phases = json.loads((Path(cfg.out) / "timings.json").read_text())
    return {"steps": steps, "wall_s": round(total, 1), "phases_s": phases, "s_per_step": float(np.median(secs[skip:])),
            "peak_GiB": torch.cuda.max_memory_allocated() / 2**30,
            "mora_last": log[-1].get("mora"), "flow_last": log[-1]["flow"]}


def run_baseline(steps: int, device, mora: bool) -> dict:
    from peft import LoraConfig

    from smrabooth.align.mora import window_source_frames
    from smrabooth.lora.targets import ALL_LAYER_TYPES, module_suffixes
    from smrabooth.models.searaft import compute_flow

    pipe = wan_13b_pipeline(device, torch.bfloat16)
    tr, vae = pipe.transformer, pipe.vae.to(torch.bfloat16).requires_grad_(False)
    with torch.no_grad():
        emb, _ = pipe.encode_prompt("a person S* dribbling", do_classifier_free_guidance=False, device=device)
        frames = synthetic_frames().to(device)
        z0 = vae.encode((frames * 2 - 1).permute(1, 0, 2, 3)[None].to(vae.dtype)).latent_dist.mode().float()
    pipe.text_encoder = None
    flow_model = searaft_m(device) if mora else None
    if mora:
        with torch.no_grad():
            ref = torch.cat([compute_flow(flow_model, frames[i : i + 8], frames[i + 1 : i + 9])
                             for i in range(0, FRAMES - 1, 8)])
    tr.requires_grad_(False)
    tr.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=module_suffixes(ALL_LAYER_TYPES)))
    params = [p for p in tr.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(steps):
        t0 = time.time()
        sigma = torch.rand(1, device=device)
        noise = torch.randn_like(z0)
        z_t = (1 - sigma) * z0 + sigma * noise
        u = tr(z_t.to(tr.dtype), (sigma * 1000).to(tr.dtype), emb, return_dict=False)[0].float()
        loss = torch.nn.functional.mse_loss(u, noise - z0)
        if mora:
            s = [0, 2, 4, 6][step % 4]
            z0_hat = (z_t - sigma * u)[:, :, s : s + 6]
            video = vae.decode(z0_hat.to(vae.dtype), return_dict=False)[0]  # stock decode, autograd keeps it all
            pred = ((video[:, :, 5:].clamp(-1, 1) + 1) / 2)[0].permute(1, 0, 2, 3)
            flows = compute_flow(flow_model, pred[:-1], pred[1:])
            src = window_source_frames(s)
            loss = loss + (flows - ref[src.start : src.stop - 1]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        times.append(time.time() - t0)
    return {"steps": steps, "s_per_step": float(np.median(times[2:])),
            "peak_GiB": torch.cuda.max_memory_allocated() / 2**30}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30, help="steps of each 'ours' variant")
    ap.add_argument("--baseline-steps", type=int, default=8)
    ap.add_argument("--variants", default="baseline,baseline-mora,nomora,mora",
                    help="baseline, baseline-mora, nomora, mora[-option...] (see the docstring)")
    args = ap.parse_args()
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            torch.cuda.empty_cache()
            try:
                if name.startswith("baseline"):
                    results[name] = run_baseline(args.baseline_steps, device, mora=name == "baseline-mora")
                else:
                    results[name] = run_ours(name, args.steps, Path(tmp), device)
            except torch.OutOfMemoryError:
                results[name] = {"oom": True, "peak_GiB": torch.cuda.max_memory_allocated() / 2**30}
            print(name, json.dumps(results[name]), flush=True)
    print(f"{'variant':16s} {'s/step':>8s} {'peak GiB':>9s} {'400 steps (min)':>16s}")
    for k, r in results.items():
        if r.get("oom"):
            print(f"{k:16s} {'OOM':>8s} {r['peak_GiB']:9.1f}")
        else:
            print(f"{k:16s} {r['s_per_step']:8.3f} {r['peak_GiB']:9.1f} {400 * r['s_per_step'] / 60:16.1f}")


if __name__ == "__main__":
    main()
