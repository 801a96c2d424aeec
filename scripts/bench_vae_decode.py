"""Benchmark a differentiable decode of a window of Wan latents: stock `vae.decode` vs checkpointed.

Builds `AutoencoderKLWan` with the real Wan2.1 VAE config (diffusers defaults) and random weights, and
for each size times forward + backward of decoding a window of latents (gradient w.r.t. the latents,
VAE frozen) and records peak GPU memory (torch.cuda.max_memory_allocated). Out-of-memory in one case
is reported in the table and the others still run.

    python scripts/bench_vae_decode.py                              # H100: 576x320 and 832x480, bf16
    python scripts/bench_vae_decode.py --device cpu --small          # smoke test: tiny VAE, fp32
"""

from __future__ import annotations

import argparse
import time

import torch

from smrabooth.models.vae_decode import decode_latents_differentiable, denormalize_latents


def build_vae(small: bool, device: str, dtype: torch.dtype):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    if small:
        vae = AutoencoderKLWan(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    else:  # Wan2.1 VAE: base_dim 96, z_dim 16, dim_mult [1,2,4,4], num_res_blocks 2, temporal down [F,T,T]
        vae = AutoencoderKLWan()
    return vae.to(device, dtype).eval().requires_grad_(False)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class SavedBytes:
    """Bytes autograd stores for backward (unique storages, weights excluded): a device-free memory measure.

    Tensors saved inside a checkpointed region are not stored (checkpoint recomputes them), so they are not
    counted. Not counted either: the checkpoints' inputs (the causal caches, about 0.8 GiB per latent frame
    at 576x320 in bf16) and the transient activations of the one region recomputed during backward.
    Use it to compare methods on CPU; on GPU the peak-memory column is the real number.
    """

    def __init__(self):
        self.storages: dict[int, int] = {}

    def pack(self, t: torch.Tensor):
        if not isinstance(t, torch.nn.Parameter):
            self.storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    def gib(self) -> float:
        return sum(self.storages.values()) / 2**30


def run_case(vae, method: str, latents: torch.Tensor, device: str):
    """Forward + backward once; return (seconds, peak GiB or None, saved GiB, grad)."""
    z = latents.clone().requires_grad_(True)
    saved = SavedBytes()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
        if method == "stock":
            video = vae.decode(denormalize_latents(vae, z.to(vae.dtype))).sample
        else:
            video = decode_latents_differentiable(vae, z, checkpoint=(method == "checkpointed"))
    video.float().square().mean().backward()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return seconds, peak, saved.gib(), z.grad


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"], help="default: bf16 on GPU")
    parser.add_argument("--small", action="store_true", help="tiny VAE and tiny frames (CPU smoke test)")
    parser.add_argument("--sizes", default=None, help="WxH list, e.g. 576x320,832x480")
    parser.add_argument("--latents", type=int, default=6, help="latent frames in the window (6 = MoRA)")
    parser.add_argument("--methods", default="stock,plain,checkpointed")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up; best is shown")
    args = parser.parse_args()

    from diffusers.utils import logging

    logging.set_verbosity_error()  # the VAE is cast with .to(dtype) on purpose; skip diffusers' warning
    dtype_name = args.dtype or ("fp32" if args.device == "cpu" else "bf16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name]
    sizes = args.sizes or ("64x32" if args.small else "576x320,832x480")
    vae = build_vae(args.small, args.device, dtype)
    print(
        f"VAE {'tiny' if args.small else 'Wan2.1'} ({sum(p.numel() for p in vae.parameters()) / 1e6:.1f}M params), "
        f"{dtype_name}, {args.device}, {args.latents} latents -> {1 + 4 * (args.latents - 1)} frames"
    )
    print(
        f"{'size':>9} {'method':>13} {'fwd+bwd s':>10} {'peak GiB':>9} {'saved GiB':>10} {'grad max|diff| vs first':>24}"
    )
    for size in sizes.split(","):
        width, height = (int(v) for v in size.lower().split("x"))
        torch.manual_seed(0)
        latents = torch.randn(1, 16, args.latents, height // 8, width // 8, device=args.device)
        reference_grad = None
        for method in args.methods.split(","):
            try:
                best, peak = float("inf"), None
                for _ in range(1 + args.repeats):
                    seconds, peak, saved_gib, grad = run_case(vae, method, latents, args.device)
                    best = min(best, seconds)
                diff = "" if reference_grad is None else f"{(grad - reference_grad).abs().max().item():.3g}"
                reference_grad = grad if reference_grad is None else reference_grad
                peak_text = "n/a" if peak is None else f"{peak:.1f}"
                print(f"{size:>9} {method:>13} {best:>10.3f} {peak_text:>9} {saved_gib:>10.3f} {diff:>24}", flush=True)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
                if not is_oom(err):
                    raise
                print(f"{size:>9} {method:>13} {'OOM':>10} {'-':>9} {'-':>10}", flush=True)
            finally:
                grad = None
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
