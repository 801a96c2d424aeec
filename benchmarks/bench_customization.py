"""A whole customization at the real Wan2.1-1.3B size (random weights), against the plain diffusers + peft loops:
the `official` subject LoRA (1,000 steps of batch 2), the `official` motion LoRA (250 steps of batch 2 with
MoRA), and one 49-frame video at 832x480 with both LoRAs (50 steps, CFG 5).

    python benchmarks/bench_customization.py                  # GPU, about 6 min on one H100/H200
    python benchmarks/bench_customization.py --memory low     # the trainers' low-memory settings
    python benchmarks/bench_customization.py --tiny           # CPU, the tiny models (a check of the script)
    python benchmarks/bench_customization.py --stages motion --memory low --vae-dtype fp32   # one stage, a setting

Each stage runs a few steps end to end (the trainers with their caching and saving, with `--memory` as given,
default auto; the sampler), and the whole is projected from them: a stage's time = its setup (the run's wall
time minus its timed steps) + the recipe's step count x its median step. Plain: the baseline steps of
bench_subject_train.py and bench_motion_train.py (a diffusers + peft flow-matching step, no SuRA, no MoRA) x the
same step counts and batch, and stock `WanPipeline` for the video (without LoRAs). Generation rows: ours with
both LoRAs merged and compiled (exact), and the same with `--cache mag` at its floor (skipping as much as it
ever does; benchmarks/README.md gives its fidelity on a trained model). Prints one table; writes results.json
under $OUT when set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).parent))

OFFICIAL = {"subject": (1000, 2), "motion": (250, 2)}  # steps, batch (recipes.py: the authors' code as it runs)
GEN_STEPS = 50


def projected(row: dict, steps: int) -> float:
    """Setup + `steps` x the median step of a few-step run."""
    setup = max(row["wall_s"] - row["steps"] * row["s_per_step"], 0.0)
    return setup + steps * row["s_per_step"]


def main():
    from bench_generate import build_pipe, random_loras, run_ours, run_stock
    from bench_official_train import Device, run_motion, run_subject

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--memory", default="auto", choices=["low", "auto", "max"])
    ap.add_argument("--subject-steps", type=int, default=12, help="steps timed of the subject run")
    ap.add_argument("--motion-steps", type=int, default=6, help="steps timed of the motion run")
    ap.add_argument("--gen-steps", type=int, default=GEN_STEPS, help="denoising steps of the timed videos")
    ap.add_argument("--baseline-steps", type=int, default=8)
    ap.add_argument("--tiny", action="store_true", help="the tiny models on the CPU (no baselines, no memory)")
    ap.add_argument("--vae-dtype", default=None, choices=["auto", "fp32", "bf16"],
                    help="the trainers' VAE while training (default: the recipe's)")
    ap.add_argument("--stages", default="subject,motion,video",
                    help="comma-separated stages to time (a partial run prints its rows, no table)")
    args = ap.parse_args()
    stages = set(args.stages.split(","))
    if not stages or stages - {"subject", "motion", "video"}:
        ap.error(f"--stages {args.stages!r}: choose from subject, motion, video")
    settings = {"memory": args.memory, **({"vae_dtype": args.vae_dtype} if args.vae_dtype else {})}
    dev = Device(torch.device("cpu" if args.tiny else "cuda"))
    name = torch.cuda.get_device_name() if dev.cuda else "cpu"
    print(f"device: {name}, torch {torch.__version__}, --memory {args.memory}", flush=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["SMRABOOTH_CACHE"] = str(tmp / "cache")  # MagCache's ratios of this run
        if "subject" in stages:
            rows["subject"] = run_subject("official", args.subject_steps, tmp, dev, args.tiny, **settings)
            print("subject", json.dumps(rows["subject"]), flush=True)
        if "motion" in stages:
            (rows["motion"],) = run_motion("official", args.motion_steps, 0, tmp, dev, args.tiny, **settings).values()
            print("motion", json.dumps(rows["motion"]), flush=True)
        if stages != {"subject", "motion", "video"}:
            return
        if dev.cuda:
            torch.cuda.empty_cache()
            from bench_motion_train import run_baseline as motion_baseline
            from bench_subject_train import run_baseline as subject_baseline

            rows["subject-plain"] = subject_baseline(args.baseline_steps, dev.device)
            rows["motion-plain"] = motion_baseline(args.baseline_steps, dev.device, mora=False)
            torch.cuda.empty_cache()
        size = "tiny" if args.tiny else "1.3b"
        gen = SimpleNamespace(frames=9 if args.tiny else 49, height=32 if args.tiny else 480,
                              width=48 if args.tiny else 832, steps=args.gen_steps, device=str(dev.device))
        pipe = build_pipe(size, gen.device, torch.float32 if args.tiny else torch.bfloat16)
        loras = random_loras(pipe.transformer)
        rows["video-stock"] = run_stock(pipe, None, "none", gen)
        rows["video-ours"] = run_ours(pipe, loras, "merged" if args.tiny else "merged-compile", gen)
        rows["video-ours-mag"] = run_ours(pipe, loras, "merged-magall" if args.tiny else "merged-compile-magall", gen)
        for k in ("video-stock", "video-ours", "video-ours-mag"):
            print(k, json.dumps(rows[k]), flush=True)

    def video_s(row):  # a 50-step video: the mean step where a cache skips steps, plus the decode
        return GEN_STEPS * row.get("s_per_step_mean", row["s_per_step"]) + row["decode_s"]

    total = {"subject": projected(rows["subject"], OFFICIAL["subject"][0]),
             "motion": projected(rows["motion"], OFFICIAL["motion"][0]), "video": video_s(rows["video-ours"]),
             "video, --cache mag (floor)": video_s(rows["video-ours-mag"])}
    plain = {}
    if "subject-plain" in rows:  # a plain step is batch 1: x the batch
        plain = {"subject": OFFICIAL["subject"][0] * OFFICIAL["subject"][1] * rows["subject-plain"]["s_per_step"],
                 "motion": OFFICIAL["motion"][0] * OFFICIAL["motion"][1] * rows["motion-plain"]["s_per_step"]}
    plain["video"] = plain["video, --cache mag (floor)"] = video_s(rows["video-stock"])
    print(f"\nwhole customization, `official` as it runs, {name}, --memory {args.memory}, {time.strftime('%Y-%m-%d')}")
    print("| stage | ours, min | plain diffusers + peft / stock, min | ratio |\n|---|---:|---:|---:|")
    for stage, secs in total.items():
        ref = plain.get(stage)
        print(f"| {stage} | {secs / 60:.2f} | {'' if ref is None else f'{ref / 60:.2f}'} | "
              f"{'' if not ref else f'{secs / ref:.2f}'} |")
    whole = total["subject"] + total["motion"] + total["video"]
    print(f"| whole (subject + motion + one video) | {whole / 60:.2f} | | |")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["OUT"]) / "bench_customization.json").write_text(
            json.dumps({"device": name, "memory": args.memory, "rows": rows, "projected_s": total, "plain_s": plain},
                       indent=1, default=str))


if __name__ == "__main__":
    main()
