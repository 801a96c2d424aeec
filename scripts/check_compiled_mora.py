"""MoRA's step with its VAE decoder eager and torch.compiled: checked and timed (a study; the trainer runs it eager).

The official recipe's MoRA step: a window of 6 normalised latents decoded in overlapping tiles (frame checkpointing,
the last 3 latent frames stored, as the motion trainer's store-3 tier), its 16 kept frames run through SEA-RAFT
in 15 pairs, an L1 on the flows, backward to the latents. Eager, then with the decoder compiled in place (static
shapes, dynamo's recompile limit raised for the tiled decode's graphs; SEA-RAFT stays eager). Prints the seconds
of a forward + backward (median of `--repeats` after one warm-up call), the first compiled call (the compilation),
the peak memory, and the compiled frames' and gradient's difference to eager; exits 1 when a difference passes
`--tolerance` (relative to the largest value).

    python scripts/check_compiled_mora.py                         # GPU: Wan2.1's VAE and SEA-RAFT-M, 576x320, bf16
    python scripts/check_compiled_mora.py --device cpu --small    # tiny models, fp32 (compiling takes minutes)
    python scripts/check_compiled_mora.py --store-frames 0 --limit-every-thread   # the trainer's failing case, and
                                                                                 # the fix to try (GPU)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager

import torch

# One graph per (tile size, latent frame of the window: first, second, later): the tiled decode has up to four tile
# sizes, so about 12 graphs, past dynamo's default limit of 8 (past it a call runs eagerly). Dynamic shapes fail in
# inductor on this decoder (torch 2.13: "cannot determine truth value of Relational").
RECOMPILE_LIMIT = 64


@contextmanager
def decoder_compiled(vae, every_thread: bool = False):
    """Within the block the VAE decoder is torch.compiled in place; on exit it is as it was.

    dynamo's config overrides are context variables (torch 2.13): `config.patch` holds in this thread only, and on
    CUDA the backward, with the frame checkpoint's recomputation, runs on the autograd engine's device thread,
    which reads the default limit. `every_thread` raises the default itself (a private entry of torch's config)."""
    before = vae.decoder._compiled_call_impl
    entry = torch._dynamo.config._config["recompile_limit"]
    default = entry.default
    vae.decoder.compile(dynamic=False)
    try:
        if every_thread:
            entry.default = RECOMPILE_LIMIT
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            yield
    finally:
        entry.default = default
        vae.decoder._compiled_call_impl = before


def build(small: bool, device: str, dtype: torch.dtype):
    from diffusers import AutoencoderKLWan

    from smrabooth.models.searaft import SEARAFT, SEARAFT_M, SEARAFT_TINY

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1) if small else AutoencoderKLWan()
    flow = SEARAFT(SEARAFT_TINY if small else SEARAFT_M)  # fp32, as load_searaft gives it; bf16 comes by autocast
    return vae.to(device, dtype).eval().requires_grad_(False), flow.to(device).eval().requires_grad_(False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny VAE and SEA-RAFT, 136x152 frames, 3-latent window "
                    "(four tile sizes, as at 576x320)")
    ap.add_argument("--store-frames", type=int, default=3, help="latent frames stored, not recomputed (3: tier "
                    "store-3; 0: tier frame, what the trainer's failing compiled run used)")
    ap.add_argument("--limit-every-thread", action="store_true", help="raise the recompile limit for every thread "
                    "(the backward's too), not only this one")
    ap.add_argument("--dtype", default=None, choices=["fp32", "bf16"], help="default: bf16 on a GPU, fp32 on a CPU")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=None, help="default: 1e-4 in fp32, 3e-2 in bf16")
    args = ap.parse_args()

    import smrabooth.align.mora as mora
    from smrabooth.models.searaft import compute_flow

    bf16 = (args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")) == "bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    tolerance = args.tolerance or (3e-2 if bf16 else 1e-4)
    vae, flow_model = build(args.small, args.device, dtype)
    if args.small:  # the tile grid scaled to the small frames, so the decode still has tiles of several sizes
        mora.TILE, mora.TILE_STRIDE = (10, 12), (5, 6)
    h, w, window, drop = (17, 19, 3, 1) if args.small else (40, 72, 6, 5)
    torch.manual_seed(1)
    z = torch.randn(1, 16, window + 1, h, w, device=args.device, dtype=dtype)

    def step():  # as the motion trainer runs it: under bf16 autocast on a GPU
        latents = z.clone().requires_grad_(True)
        with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=bf16):
            frames = mora.decode_window(vae, latents, 1, window, drop, checkpoint="frame",
                                        store_last=args.store_frames, tiling="tiled")
            flows = compute_flow(flow_model, frames[0, :-1], frames[0, 1:])
        flows.float().abs().mean().backward()
        return frames.detach().float(), latents.grad.float()

    def timed():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    def measure(label):
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        out, first = timed()
        times = [timed()[1] for _ in range(args.repeats)]
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else float("nan")
        print(f"{label}: first call {first:.2f} s, then {statistics.median(times):.3f} s (median of {args.repeats}), "
              f"peak {peak:.1f} GiB", flush=True)
        return out, statistics.median(times)

    (frames, grad), eager = measure("eager")
    with decoder_compiled(vae, args.limit_every_thread):
        (frames_c, grad_c), compiled = measure("compiled")
    d_frames = float((frames_c - frames).abs().max() / frames.abs().max())
    d_grad = float((grad_c - grad).abs().max() / grad.abs().max())
    print(f"compiled / eager time: {compiled / eager:.2f}; difference (relative to the largest value): frames "
          f"{d_frames:.1e}, latent gradient {d_grad:.1e} (tolerance {tolerance:.0e})")
    if max(d_frames, d_grad) > tolerance:
        print("FAIL: the compiled MoRA step differs from the eager one beyond the tolerance", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
