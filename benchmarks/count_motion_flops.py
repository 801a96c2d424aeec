"""The floating-point work of one `official` motion step at the real Wan2.1-1.3B size, counted, not timed.

    python benchmarks/count_motion_flops.py [--store-frames 0] [--step-seconds 4.39] [--target-minutes 5]

Counts with torch's FlopCounterMode on the meta device (no weights, no memory, seconds on a CPU) what the motion
trainer runs per step under `official`: per sample, the DiT's forward and its backward to the LoRA inputs (batch 2,
49 frames at 576x320: 13 x 40 x 72 latents, 9,360 tokens), and MoRA: the tiled decode of a 6-latent window
(`align.mora.decode_window`, frame checkpointing with `--store-frames` latent frames stored), SEA-RAFT-M over the
15 kept pairs, forward and backward. Prints TFLOP per part and per step, and the sustained throughput a step time
implies, as a share of the card's dense bf16 peak (`--peak-tflops`, 989 for an H100 or H200 SXM): the target's
(`--target-minutes` for `--steps` steps) and a measured one's (`--step-seconds`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))

LATENTS = (13, 40, 72)  # 49 frames at 576x320 through Wan2.1's VAE (4x in time, 8x in space)
WINDOW, DROP = 6, 5  # the official MoRA window (latent frames) and the decoded frames it drops
BATCH = 2


def tflop(counter: FlopCounterMode) -> float:
    return counter.get_total_flops() / 1e12


def count_mora(store_frames: int) -> dict:
    from diffusers import AutoencoderKLWan

    import smrabooth.align.mora as mora
    from smrabooth.models.searaft import SEARAFT, SEARAFT_M, compute_flow

    with torch.device("meta"):
        vae = AutoencoderKLWan().to(torch.bfloat16).requires_grad_(False)
        flow_model = SEARAFT(SEARAFT_M).requires_grad_(False)
    z = torch.randn(1, 16, WINDOW + 1, *LATENTS[1:], device="meta", dtype=torch.bfloat16, requires_grad=True)
    out = {}
    for name, checkpoint in (("stored", False), ("checkpointed", "frame")):
        counter = FlopCounterMode(display=False)
        with counter:
            frames = mora.decode_window(vae, z, 1, WINDOW, DROP, checkpoint=checkpoint, store_last=store_frames,
                                        tiling="tiled")
            decode = tflop(counter)
            flows = compute_flow(flow_model, frames[0, :-1].float(), frames[0, 1:].float())
            forward = tflop(counter)
            flows.abs().mean().backward()
        out[name] = {"decode forward": decode, "SEA-RAFT forward": forward - decode, "forward + backward": tflop(counter)}
    return out


def count_dit(checkpointing: bool) -> dict:
    from bench_generate import SIZES
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        dit = WanTransformer3DModel(in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, **SIZES["1.3b"])
        dit = dit.to(torch.bfloat16).requires_grad_(False)
    x = torch.randn(BATCH, 16, *LATENTS, device="meta", dtype=torch.bfloat16, requires_grad=True)
    t = torch.full((BATCH,), 500.0, device="meta")
    text = torch.randn(BATCH, 512, 4096, device="meta", dtype=torch.bfloat16)
    counter = FlopCounterMode(display=False)
    with counter:
        out = dit(x, t, text, return_dict=False)[0]
        forward = tflop(counter)
        out.float().mean().backward()  # to the inputs: what the LoRAs' gradients need (theirs are negligible)
    total = tflop(counter) + (forward if checkpointing else 0.0)  # checkpointing runs the forward again
    return {"forward": forward, "forward + backward": total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store-frames", type=int, default=0, help="latent frames the MoRA decode stores (0: tier frame)")
    ap.add_argument("--dit-checkpointing", action="store_true", help="count the DiT's recomputed forward")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card (H100/H200 SXM)")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--target-minutes", type=float, default=5.0)
    ap.add_argument("--step-seconds", type=float, default=None, help="a measured step time to compare")
    args = ap.parse_args()

    mora = count_mora(args.store_frames)
    dit = count_dit(args.dit_checkpointing)
    tier = "checkpointed" if args.store_frames < WINDOW else "stored"
    step = dit["forward + backward"] + BATCH * mora[tier]["forward + backward"]
    rows = [(f"DiT 1.3B, batch {BATCH}, forward", dit["forward"]),
            (f"DiT 1.3B, batch {BATCH}, forward + backward{' + recompute' if args.dit_checkpointing else ''}",
             dit["forward + backward"])]
    for name, parts in mora.items():
        label = "nothing recomputed" if name == "stored" else f"frame checkpoints, {args.store_frames} stored"
        rows += [(f"MoRA per sample ({label}): {k}", v) for k, v in parts.items()]
    rows.append((f"one step: DiT + {BATCH} x MoRA ({tier})", step))
    print("| part | TFLOP |\n|---|---:|")
    print("\n".join(f"| {name} | {v:.1f} |" for name, v in rows))
    target_s = args.target_minutes * 60 / args.steps
    print(f"\n{args.target_minutes:g} min for {args.steps} steps is {target_s:.2f} s a step: {step / target_s:.0f} "
          f"TFLOP/s sustained, {step / target_s / args.peak_tflops:.0%} of a {args.peak_tflops:g} TFLOP/s peak")
    if args.step_seconds:
        rate = step / args.step_seconds
        print(f"a {args.step_seconds:g} s step runs at {rate:.0f} TFLOP/s, {rate / args.peak_tflops:.0%} of the peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
