"""What a step cache costs in fidelity: frames with `--cache NAME:T` (first-block, mag) against the same
generation without it, on the bundled SMRA-Sprites model (a trained model, so the frames mean something).

    python benchmarks/cache_fidelity.py --caches first-block:0.05,first-block:0.1,mag:0.06,mag:0.12 --out x.json

For each cache: PSNR and SSIM of the cached frames against the uncached ones (mean over prompts and seeds,
and the worst case), and the share of model passes the cache let run past the first block (1.0: nothing
skipped). MagCache is calibrated first on the first prompt and seed (in a temporary cache folder), as a
user's first video would. Runs on a CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PROMPTS = [
    "a red circle moving left on a blue background",
    "a yellow striped square moving up on a green background",
    "a V* heart doing S* on a blue background",
    "a green triangle moving right on a black background",
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over frames (torchmetrics' Gaussian-window SSIM, data range 255)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    ta = torch.from_numpy(a).permute(0, 3, 1, 2).double()
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).double()
    return float(structural_similarity_index_measure(ta, tb, data_range=255.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a Wan model folder (default: the bundled SMRA-Sprites model)")
    ap.add_argument("--caches", default="first-block:0.05,first-block:0.1,mag:0.06,mag:0.12,mag:0.25")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--shift", type=float, default=1.0, help="Euler shift (1.0: the official preset's)")
    ap.add_argument("--out", help="write the table as JSON here")
    args = ap.parse_args()

    from smrabooth.models.wan import load_wan_pipeline
    from smrabooth.sampling import GenerateConfig, generate

    model = args.model
    if model is None:
        from importlib.resources import files

        for package in ("smrabooth_sprites", "smrabooth"):  # the bundle's home before and after the lab split
            try:
                candidate = files(package) / "assets" / "smra-sprites"
            except ModuleNotFoundError:
                continue
            if candidate.is_dir():
                model = str(candidate)
                break
    os.environ["SMRABOOTH_CACHE"] = tempfile.mkdtemp(prefix="cache-fidelity-")  # MagCache ratios of this run
    pipe = load_wan_pipeline(model, device=args.device)
    calls = [0]  # passes that ran past the first block: block 1's self-attention ran (a cached pass skips it)
    pipe.transformer.blocks[1].attn1.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    info = json.loads((Path(model) / "sprites.json").read_text()) if (Path(model) / "sprites.json").exists() else {}
    size, frames = info.get("config", {}).get("size", 128), info.get("config", {}).get("frames", 17)

    def run(prompt, seed, cache):
        calls[0] = 0
        cfg = GenerateConfig(prompt=prompt, frames=frames, height=size, width=size, steps=args.steps, guidance=5.0,
                             seed=seed, scheduler="euler", shift=args.shift, cache=cache)
        t0 = time.perf_counter()
        out = generate(pipe, cfg, progress=False).frames
        return out, calls[0] / (2 * args.steps), time.perf_counter() - t0

    seeds = [int(s) for s in args.seeds.split(",")]
    reference = {(p, s): run(p, s, None) for p in PROMPTS for s in seeds}
    run(PROMPTS[0], seeds[0], "mag")  # calibrates MagCache for this model and schedule (skips nothing)
    rows = []
    for cache in args.caches.split(","):
        ps, ss, computed, secs = [], [], [], []
        for (p, s), (ref, _, ref_secs) in reference.items():
            out, share, sec = run(p, s, cache)
            ps.append(psnr(out, ref))
            ss.append(ssim(out, ref))
            computed.append(share)
            secs.append(sec / ref_secs)
        rows.append(dict(cache=cache, psnr_mean=float(np.mean(ps)), psnr_min=float(np.min(ps)),
                         ssim_mean=float(np.mean(ss)), ssim_min=float(np.min(ss)),
                         passes_computed=float(np.mean(computed)), time_ratio=float(np.mean(secs))))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nSMRA-Sprites model, {len(PROMPTS)} prompts x {len(seeds)} seeds, {args.steps} Euler steps (shift "
          f"{args.shift}), CFG 5, {frames} frames at {size}x{size}; {time.strftime('%Y-%m-%d')}")
    print(f"| cache | PSNR dB (mean / min) | SSIM (mean / min) | passes computed | {args.device} time ratio |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cache']} | {r['psnr_mean']:.1f} / {r['psnr_min']:.1f} | {r['ssim_mean']:.3f} / "
              f"{r['ssim_min']:.3f} | {r['passes_computed']:.2f} | {r['time_ratio']:.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "steps": args.steps, "shift": args.shift,
                                              "prompts": PROMPTS, "seeds": seeds}, indent=1) + "\n")


if __name__ == "__main__":
    main()
