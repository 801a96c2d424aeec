"""Generation speed and memory at the real Wan2.1 sizes (random weights), ours against stock diffusers.

    python benchmarks/bench_generate.py --size 1.3b --steps 6            # speed table, H200: ~5 min
    python benchmarks/bench_generate.py --size 14b --steps 4 --rows stock,merged,merged-offload
    python benchmarks/bench_generate.py --size tiny --steps 3 --device cpu   # the script itself, on a CPU

One video of the paper's size (49 frames at 832x480, CFG 5) with a subject LoRA (rank 32 on q, k, ffn.0)
and a motion LoRA (rank 64 on v, o, ffn.0, ffn.2), as the official recipe trains them. Rows (pick with
--rows; all by default):

  stock            stock `WanPipeline`, no LoRA
  stock-loras      stock `WanPipeline` + both LoRAs through `load_lora_weights` (peft adapters, 0.6 / 1.0)
  stock-fused      the same, fused into the weights (`fuse_lora`)
  stock-compile    stock, no LoRA, `transformer.compile_repeated_blocks(fullgraph=True)`
  adapter          ours, LoRAs as peft adapters with per-step scales (official schedule)
  merged           ours, LoRAs merged into the weights, re-merged at the switch step
  merged-compile, merged-compile-cfgbatch, merged-compile-cache05, merged-compile-cache10, merged-cache05
  merged-attn-NAME one row per installed diffusers attention backend
  merged-offload   the text encoder on the CPU except while it encodes, VAE tiled (memory row)
  merged-compile-cacheall  first-block cache with an infinite threshold: every step after the first runs
                   only the first block. With random weights no realistic threshold skips anything, so the
                   cache's speed at a trained model's skip rate r is derived: (1-r) x full step + r x this.
  merged-compile-magall  MagCache (calibrated on a first, untimed video) with an infinite threshold: it skips as
                   much as MagCache ever does (at most 3 steps in a row, none in the first 20%), 0.4 of the
                   passes computed; `s_per_step_mean` is its cost
  stock-compile-fp8  torchao float8 (dynamic activations, per-row weights) linears, compiled, no LoRA
  merged-compile-sage1  SageAttention 1 (Triton, 8-bit QK) for the self-attention, through a patched SDPA
  attn-error       attention output error of each backend against float64 math on the 1.3B's shapes

Per row: seconds per denoising step (both CFG passes; the median over --steps, first step excluded),
seconds per video (50 steps x that median + the measured VAE decode), peak GPU memory of the whole call
(text encoding, denoising, decoding), and compile time where compiled. Every row starts from the same
weights and seed. The text encoder is umT5-XXL's real size (24 layers, d_model 4096) so that offloading it
is measured; the tokenizer is the tiny word-level one (token ids are what matter here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

SIZES = {  # WanTransformer3DModel configs of the released models
    "1.3b": dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30),
    "14b": dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, num_layers=40),
    "tiny": dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, num_layers=2),
}
UMT5_XXL = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64)
PROMPT = "a V* dog doing S* on a beach"


def build_pipe(size: str, device: str, dtype: torch.dtype):
    """A WanPipeline of the real configuration with random weights, initialised on the device."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from smrabooth.models.tiny import build_tiny_tokenizer

    tiny = size == "tiny"
    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    with torch.device(device):
        te_sizes = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4) if tiny else UMT5_XXL
        te = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), pad_token_id=0, eos_token_id=1, **te_sizes))
        te = te.to(dtype).eval()
        vae = AutoencoderKLWan(**(dict(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1) if tiny else {}))
        vae = vae.eval()
        tr = WanTransformer3DModel(in_channels=16, out_channels=16, text_dim=te_sizes["d_model"],
                                   freq_dim=32 if tiny else 256, **SIZES[size])
        tr = tr.to(dtype).eval()
    for p in tr.parameters():  # random weights of a realistic spread, so the LoRA deltas are small
        p.data.normal_(0, 0.02)
    sched = FlowMatchEulerDiscreteScheduler(shift=1.0)
    pipe = WanPipeline(tokenizer=tok, text_encoder=te, vae=vae, transformer=tr, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def random_loras(transformer):
    """A subject LoRA (rank 32: q, k, ffn.0) and a motion LoRA (rank 64: v, o, ffn.0, ffn.2), random."""
    from smrabooth.lora.files import LoraWeights, base_model_info
    from smrabooth.lora.targets import LAYER_TYPES

    g = torch.Generator().manual_seed(1)
    out = {}
    for kind, rank, types in (("subject", 32, ("q", "k", "ffn.0")), ("motion", 64, ("v", "o", "ffn.0", "ffn.2"))):
        tensors = {}
        for i, block in enumerate(transformer.blocks):
            for t in types:
                for suffix in LAYER_TYPES[t]:
                    lin = block.get_submodule(suffix)
                    tensors[f"blocks.{i}.{suffix}.lora_A.weight"] = torch.randn(rank, lin.in_features, generator=g) * 0.01
                    tensors[f"blocks.{i}.{suffix}.lora_B.weight"] = torch.randn(lin.out_features, rank, generator=g) * 0.01
        out[kind] = LoraWeights(tensors, rank, float(rank), {"kind": kind, "base": base_model_info(transformer.config)})
    return out


class StepClock:
    """Wall time of each denoising step (device synchronised at every step boundary)."""

    def __init__(self, device):
        self.device, self.marks = torch.device(device), []

    def __call__(self, *_):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter())

    @staticmethod
    def median_gap(marks) -> float:
        gaps = [b - a for a, b in zip(marks[1:], marks[2:])]  # step 0 (warm-up, compile) left out
        return statistics.median(gaps) if gaps else float("nan")


def reset_peak(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.device(device).type == "cuda" else float("nan")


def run_stock(pipe, loras, mode: str, args) -> dict:
    """Stock WanPipeline: no LoRA, LoRAs as peft adapters, or fused; optionally compiled."""
    from smrabooth.lora.files import save_lora

    tr = pipe.transformer
    row = {}
    if mode in ("loras", "fused"):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            for kind in ("subject", "motion"):
                save_lora(Path(d) / f"{kind}.safetensors", loras[kind])
                pipe.load_lora_weights(str(Path(d) / f"{kind}.safetensors"), adapter_name=kind)
        pipe.set_adapters(["subject", "motion"], [0.6, 1.0])
        if mode == "fused":
            pipe.fuse_lora(adapter_names=["subject", "motion"])
    if mode == "compile":
        tr.compile_repeated_blocks(fullgraph=True)  # compiled lazily: inside the first step's time
    reset_peak(args.device)
    clock = StepClock(args.device)  # marks the end of every step
    clock()
    latents = pipe(prompt=PROMPT, num_frames=args.frames, height=args.height, width=args.width,
                   num_inference_steps=args.steps, guidance_scale=5.0, output_type="latent",
                   generator=torch.Generator().manual_seed(0),
                   callback_on_step_end=lambda p, i, t, kw: (clock(), kw)[1]).frames
    t_dec = time_decode(pipe, latents, args.device)
    row.update(s_per_step=StepClock.median_gap(clock.marks), first_step=clock.marks[1] - clock.marks[0],
               decode_s=t_dec, peak_gib=peak_gib(args.device))
    if mode == "fused":
        pipe.unfuse_lora()
    if mode in ("loras", "fused"):
        pipe.delete_adapters(["subject", "motion"])
    if mode == "compile":
        for b in tr.blocks:
            b._compiled_call_impl = None
    return row


def time_decode(pipe, latents, device) -> float:
    from smrabooth.sampling import decode_latents

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        decode_latents(pipe, latents)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_ours(pipe, loras, name: str, args) -> dict:
    """Ours (smrabooth.sampling.generate) with the official schedule: subject 0.6, then 0.8 from step 15
    of 50 (mapped by sigma to --steps), motion 1.0, shift 1."""
    from smrabooth.sampling import GenerateConfig, generate

    opts = dict(lora_mode="adapter" if name.startswith("adapter") else "merged")
    parts = name.split("-")
    opts["compile"] = "compile" in parts
    opts["cfg_batch"] = "cfgbatch" in parts
    opts["offload"] = opts["vae_tiling"] = "offload" in parts
    for p in parts:
        if p == "cacheall":
            opts["cache"] = "first-block:1e9"
        elif p == "magall":
            opts["cache"] = "mag:1e9"
        elif p.startswith("cache"):
            opts["cache"] = f"first-block:{int(p[5:]) / 100}"
    if "attn" in parts:
        opts["attention"] = name.split("attn-", 1)[1]
    restore_sdpa = patch_sage1() if "sage1" in parts else None
    if opts["offload"]:  # the pipeline as `--offload` loads it: text encoder on the CPU
        pipe.text_encoder.to("cpu")
        torch.cuda.empty_cache() if torch.device(args.device).type == "cuda" else None
    cfg = GenerateConfig(prompt=PROMPT, frames=args.frames, height=args.height, width=args.width, steps=args.steps,
                         guidance=5.0, seed=0, scheduler="euler", shift=1.0, injection="sparse",
                         subject_scale_early=0.6, subject_scale=0.8, motion_scale=1.0, **opts)
    if opts.get("cache", "").startswith("mag"):  # MagCache calibrates in the first video; the timed one reads it
        generate(pipe, cfg, loras["subject"], loras["motion"], progress=False)
    reset_peak(args.device)
    clock = StepClock(args.device)  # marks the start of every step
    t0 = time.perf_counter()
    try:
        generate(pipe, cfg, loras["subject"], loras["motion"], progress=False, on_step=lambda i, s: clock())
    finally:
        if restore_sdpa:
            restore_sdpa()
    clock()
    marks, end = clock.marks[:-1], clock.marks[-1]
    row = dict(s_per_step=StepClock.median_gap(marks), first_step=marks[1] - marks[0], setup_s=marks[0] - t0,
               peak_gib=peak_gib(args.device))
    if len(marks) > 2:  # a step cache skips some steps: their mean, not the median, is its cost (first excluded)
        row["s_per_step_mean"] = (marks[-1] - marks[1]) / (len(marks) - 2)
    row["decode_s"] = end - marks[-1] - row["s_per_step"]  # the call's tail is the last step and the decode
    if opts["offload"]:
        pipe.text_encoder.to(args.device)
    return row


def patch_sage1():
    """Route torch SDPA calls without a mask (Wan's self- and cross-attention) to SageAttention 1's Triton
    kernel (8-bit QK, fp16 PV). Returns the undo. Benchmark only: diffusers' dispatcher needs sage >= 2.1.1."""
    import torch.nn.functional as F
    from sageattention import sageattn

    original = F.scaled_dot_product_attention

    def sdpa(*args, **kw):
        q, k, v = (list(args) + [kw.get(n) for n in ("query", "key", "value")][len(args):])[:3]
        plain = kw.get("attn_mask") is None and not kw.get("is_causal") and kw.get("scale") is None
        if plain and len(args) + sum(n in kw for n in ("query", "key", "value")) == 3 and q.shape[-1] in (64, 128) \
                and q.dtype in (torch.float16, torch.bfloat16):
            return sageattn(q, k, v, tensor_layout="HND", is_causal=False)
        return original(*args, **kw)

    F.scaled_dot_product_attention = sdpa
    return lambda: setattr(F, "scaled_dot_product_attention", original)


def run_fp8(pipe, args) -> dict:
    """Stock, compiled, with torchao float8 linears in the blocks; plus the velocity's error against bf16."""
    import copy

    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    tr = pipe.transformer
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 13, 60, 104, generator=g).to(args.device, tr.dtype)
    text = torch.randn(1, 512, tr.config.text_dim, generator=g).to(args.device, tr.dtype)
    t = torch.tensor([700.0], device=args.device)
    with torch.no_grad():
        ref = tr(x, t, text, return_dict=False)[0].float()
    original = copy.deepcopy(tr.blocks)
    quantize_(tr.blocks, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    try:
        with torch.no_grad():
            out = tr(x, t, text, return_dict=False)[0].float()
        row = run_stock(pipe, None, "compile", args)
        row["velocity_rel_error"] = float((out - ref).norm() / ref.norm())
    finally:
        tr.blocks = original
    return row


def attention_errors(args) -> dict:
    """Each backend's attention output against float64 math on Wan 1.3B's self-attention shape."""
    import torch.nn.functional as F
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    from smrabooth.sampling import installed_attention_backends

    g = torch.Generator().manual_seed(0)
    tokens = 20280 if torch.device(args.device).type == "cuda" else 512
    q, k, v = (torch.randn(1, tokens, 12, 128, generator=g).to(args.device, torch.bfloat16) for _ in range(3))
    rows = torch.randperm(tokens, generator=g)[:512].to(args.device)  # float64 reference on 512 query rows
    ref = F.scaled_dot_product_attention(*(a.double().transpose(1, 2) for a in (q[:, rows], k, v))).transpose(1, 2)
    out = {}
    for b in installed_attention_backends():
        if b == "_native_math":
            continue
        try:
            o = dispatch_attention_fn(q, k, v, backend=b)[:, rows].double()
            out[b] = float((o - ref).norm() / ref.norm())
        except Exception as e:
            out[b] = f"{type(e).__name__}"
    try:
        from sageattention import sageattn

        o = sageattn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), tensor_layout="HND").transpose(1, 2)
        out["sage1"] = float((o[:, rows].double() - ref).norm() / ref.norm())
    except Exception as e:
        out["sage1"] = f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=list(SIZES), default="1.3b")
    ap.add_argument("--steps", type=int, default=6, help="denoising steps per row (the median step is reported)")
    ap.add_argument("--frames", type=int, default=49)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--rows", default="all", help="comma list of rows (see the module docstring) or 'all'")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for bench_generate.json")
    args = ap.parse_args()
    if args.size == "tiny":
        args.frames, args.height, args.width = min(args.frames, 9), min(args.height, 32), min(args.width, 48)
    dtype = torch.bfloat16 if torch.device(args.device).type == "cuda" else torch.float32

    from smrabooth.sampling import installed_attention_backends

    rows = ["stock", "stock-loras", "stock-fused", "stock-compile", "adapter", "merged", "merged-compile",
            "merged-compile-cfgbatch", "merged-cache05", "merged-compile-cache05", "merged-compile-cache10",
            "merged-offload"]
    rows += [f"merged-attn-{b}" for b in installed_attention_backends() if b not in ("native", "_native_math")]
    if args.rows != "all":
        rows = args.rows.split(",")

    t0 = time.perf_counter()
    pipe = build_pipe(args.size, args.device, dtype)
    loras = random_loras(pipe.transformer)
    print(f"built {args.size} pipeline in {time.perf_counter() - t0:.1f}s on {args.device} "
          f"({torch.cuda.get_device_name() if torch.device(args.device).type == 'cuda' else 'cpu'})", flush=True)
    results = {}
    for name in rows:
        try:
            if name == "attn-error":
                results[name] = {"rel_error": attention_errors(args)}
                print(name, json.dumps(results[name]), flush=True)
                continue
            if name == "stock-compile-fp8":
                results[name] = run_fp8(pipe, args)
            elif name.startswith("stock"):
                mode = name.split("-", 1)[1] if "-" in name else "none"
                results[name] = run_stock(pipe, loras, mode, args)
            else:
                results[name] = run_ours(pipe, loras, name, args)
        except Exception as e:  # one row failing (a backend, an OOM) must not lose the others
            results[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            if torch.device(args.device).type == "cuda":
                torch.cuda.empty_cache()
        print(name, json.dumps(results[name]), flush=True)

    base = results.get("stock", {}).get("s_per_step")
    meta = dict(size=args.size, frames=args.frames, height=args.height, width=args.width, steps=args.steps,
                device=torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "cpu",
                torch=torch.__version__, date=time.strftime("%Y-%m-%d"))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"bench_generate_{args.size}.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=1))
    print(f"\n{meta}\n| row | s/step | vs stock | s/video (50 steps + decode) | first step s | decode s | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r or "s_per_step" not in r:
            print(f"| {name} | {r.get('error', r)} | | | | | |")
            continue
        ratio = r["s_per_step"] / base if base else float("nan")
        video = 50 * r["s_per_step"] + r["decode_s"]
        print(f"| {name} | {r['s_per_step']:.3f} | {ratio:.2f} | {video:.1f} | {r['first_step']:.1f} | "
              f"{r['decode_s']:.1f} | {r['peak_gib']:.1f} |")


if __name__ == "__main__":
    main()
