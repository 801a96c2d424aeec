"""Training speed and memory of the `official` recipe at the real Wan2.1-1.3B size (random weights), against
the `paper` recipe and the plain diffusers + peft baselines of bench_subject_train.py / bench_motion_train.py.

    python benchmarks/bench_official_train.py                  # GPU, the real sizes, about 3-4 min on an H200
    python benchmarks/bench_official_train.py --tiny           # CPU, the tiny models (a check of the script)

Rows (each one `smrabooth.train.*` run end to end, caching and checkpoints included; s/step is the median):
- subject-official: batch 2, LoRA on q,k,ffn.0, SuRA after block 3, bell weight; subject-paper: batch 1, all six
  layer types; subject-baseline: bench_subject_train's plain fp32 peft step (batch 1, no SuRA).
- motion-official: the official recipe (batch 2, one temporal LoRA on the clip with the debiased loss and MoRA,
  bf16 LoRA); motion-spatial / motion-temporal (row motion-described): the two phases their scripts describe
  (--spatial-steps: phase 1 trains a spatial LoRA on one frame, phase 2 the temporal LoRA), timed and peaked
  per phase; motion-paper: one LoRA, MoRA; motion-baseline / motion-baseline-mora: bench_motion_train's plain
  bf16 peft steps. Defaults of our trainers otherwise (gradient checkpointing, VAE checkpointing "block").
Writes results.json under $OUT when it is set; the table is printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))


class Device:
    """Synchronisation and peak memory on CUDA; on the CPU (the --tiny check) no memory is reported."""

    def __init__(self, device: torch.device):
        self.device, self.cuda = device, device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float:
        return torch.cuda.max_memory_allocated() / 2**30 if self.cuda else float("nan")


def models(tiny: bool, device, dtype):
    """(pipeline, DINOv2, SEA-RAFT): the real configs with random weights, or the tiny test models."""
    if tiny:
        from smrabooth.models.dinov2 import build_tiny_dinov2
        from smrabooth.models.searaft import SEARAFT, SEARAFT_TINY
        from smrabooth.models.tiny import build_tiny_wan_pipeline

        torch.manual_seed(0)
        return build_tiny_wan_pipeline(), build_tiny_dinov2(), SEARAFT(SEARAFT_TINY).eval().requires_grad_(False)
    from bench_motion_train import searaft_m
    from bench_subject_train import dinov2_giant, wan_13b_pipeline

    torch.manual_seed(0)
    with torch.device(device):
        return wan_13b_pipeline(device, dtype), dinov2_giant(device), searaft_m(device)


def step_times(log: list[dict], phase: float | None = None) -> list[float]:
    secs = np.diff([0.0] + [r["seconds"] for r in log])
    return [float(s) for s, r in zip(secs, log) if phase is None or r.get("phase") == phase]


def median_after_warmup(times: list[float]) -> float:
    return float(np.median(times[min(2, len(times) // 2):])) if times else float("nan")


def run_subject(recipe: str, steps: int, tmp: Path, dev: Device, tiny: bool, **settings) -> dict:
    from bench_subject_train import subject_folder

    from smrabooth.train.subject import SubjectTrainConfig, train_subject

    pipe, encoder, _ = models(tiny, dev.device, torch.bfloat16)
    extra = {"resolution": 64, "projector_width": 32, "sura_layer": 1} if tiny else {}
    cfg = SubjectTrainConfig.from_recipe(recipe, model="bench", data=str(subject_folder(tmp / f"subject-{recipe}")),
                                         out=str(tmp / f"run-subject-{recipe}"), steps=steps,
                                         checkpoint_every=max(steps, 1), cache_dir=str(tmp / "cache"),
                                         save_dtype="fp32", **extra, **settings)
    dev.reset_peak()
    t0 = time.time()
    train_subject(cfg, pipe, encoder, model_id="bench", progress=False)
    log = [json.loads(ln) for ln in (Path(cfg.out) / "log.jsonl").read_text().splitlines()]
    return {"steps": steps, "batch": cfg.batch_size, "wall_s": round(time.time() - t0, 1),
            "s_per_step": median_after_warmup(step_times(log)), "peak_GiB": dev.peak_gib(),
            "loss_last": log[-1]["loss"], "lora": str(Path(cfg.out) / "subject_lora.safetensors")}


def run_motion(recipe: str, steps: int, spatial_steps: int, tmp: Path, dev: Device, tiny: bool, **settings) -> dict:
    """One run; with two phases, step time and peak memory per phase (peaks: between successive loss calls)."""
    from bench_motion_train import motion_folder, synthetic_frames

    from smrabooth.train import motion
    from smrabooth.train.motion import MotionTrainConfig, train_motion

    pipe, _, flow_model = models(tiny, dev.device, torch.bfloat16)
    size = {"frames": 17, "height": 128, "width": 144, "window": 3, "window_stride": 1, "drop_frames": 1} if tiny else {}
    frames = synthetic_frames()
    if tiny:
        frames = torch.nn.functional.interpolate(frames[:17], size=(128, 144), mode="bilinear", align_corners=False)
    motion.load_motion_frames = lambda *a, **k: frames
    phases = {"spatial": spatial_steps, "temporal": steps - spatial_steps} if spatial_steps else {}
    cfg = MotionTrainConfig.from_recipe(recipe, model="bench", data=str(motion_folder(tmp / f"motion-{recipe}")),
                                        out=str(tmp / f"run-motion-{recipe}"), steps=steps,
                                        checkpoint_every=max(steps, 1), cache_dir=str(tmp / "cache"),
                                        save_dtype="fp32", **size, **settings,
                                        **({"spatial_steps": spatial_steps, "temporal_steps": steps}
                                           if phases else {}))
    peaks: dict[str, float] = {} if dev.cuda else {"spatial": float("nan"), "temporal": float("nan")}
    current = {"phase": None}
    originals = {"spatial": motion.spatial_losses, "temporal": motion.motion_losses}

    def timed(phase):
        def call(*a, **k):  # the peak since the last call belongs to the previous step's phase
            if current["phase"] is not None and dev.cuda:
                peaks[current["phase"]] = max(peaks.get(current["phase"], 0.0), dev.peak_gib())
            dev.reset_peak()
            current["phase"] = phase
            return originals[phase](*a, **k)
        return call

    motion.spatial_losses, motion.motion_losses = timed("spatial"), timed("temporal")
    try:
        dev.reset_peak()
        t0 = time.time()
        train_motion(cfg, pipe, flow_model, model_id="bench", progress=False)
        wall = time.time() - t0
        if dev.cuda:
            peaks[current["phase"]] = max(peaks.get(current["phase"], 0.0), dev.peak_gib())
    finally:
        motion.spatial_losses, motion.motion_losses = originals["spatial"], originals["temporal"]
    log = [json.loads(ln) for ln in (Path(cfg.out) / "log.jsonl").read_text().splitlines()]
    if not phases:
        return {f"motion-{recipe}": {"steps": steps, "batch": cfg.batch_size, "wall_s": round(wall, 1),
                                 "s_per_step": median_after_warmup(step_times(log)), "peak_GiB": peaks["temporal"],
                                 "lora": str(Path(cfg.out) / "motion_lora.safetensors")}}
    out = {}
    for name, code in (("spatial", 1.0), ("temporal", 2.0)):
        out[f"motion-{name}"] = {"steps": phases[name], "batch": cfg.batch_size, "wall_s": round(wall, 1),
                                 "s_per_step": median_after_warmup(step_times(log, code)),
                                 "peak_GiB": peaks.get(name, float("nan"))}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subject-steps", type=int, default=20)
    ap.add_argument("--spatial-steps", type=int, default=5, help="phase-1 steps of the described two-phase run")
    ap.add_argument("--temporal-steps", type=int, default=6, help="steps of the official motion run (and phase-2 "
                    "steps of the described one)")
    ap.add_argument("--motion-steps", type=int, default=6, help="steps of the paper motion run")
    ap.add_argument("--baseline-steps", type=int, default=8)
    ap.add_argument("--rows", default="subject-official,subject-paper,subject-baseline,motion-official,motion-paper,"
                    "motion-baseline,motion-baseline-mora", help="also: motion-described (the two phases)")
    ap.add_argument("--tiny", action="store_true", help="the tiny models on the CPU (no baselines, no memory)")
    args = ap.parse_args()
    dev = Device(torch.device("cpu" if args.tiny else "cuda"))
    if dev.cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    rows = args.rows.split(",")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for row in rows:
            if dev.cuda:
                torch.cuda.empty_cache()
            t0, before = time.time(), set(results)
            if row in ("subject-official", "subject-paper"):
                results[row] = run_subject(row.split("-")[1], args.subject_steps, tmp, dev, args.tiny)
            elif row == "motion-official":
                results.update(run_motion("official", args.temporal_steps, 0, tmp, dev, args.tiny))
            elif row == "motion-described":
                results.update(run_motion("official", args.spatial_steps + args.temporal_steps, args.spatial_steps,
                                          tmp, dev, args.tiny))
            elif row == "motion-paper":
                results.update(run_motion("paper", args.motion_steps, 0, tmp, dev, args.tiny))
            elif row == "subject-baseline" and not args.tiny:
                from bench_subject_train import run_baseline

                results[row] = {**run_baseline(args.baseline_steps, dev.device), "batch": 1}
            elif row.startswith("motion-baseline") and not args.tiny:
                from bench_motion_train import run_baseline

                results[row] = {**run_baseline(args.baseline_steps, dev.device, mora=row.endswith("mora")), "batch": 1}
            print(row, f"{time.time() - t0:.0f} s", json.dumps({k: results[k] for k in set(results) - before}),
                  flush=True)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["OUT"]) / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\n{'row':22s} {'batch':>5s} {'s/step':>8s} {'s/example':>9s} {'peak GiB':>9s}")
    for name, r in results.items():
        print(f"{name:22s} {r['batch']:5d} {r['s_per_step']:8.3f} {r['s_per_step'] / r['batch']:9.3f} "
              f"{r['peak_GiB']:9.1f}")


if __name__ == "__main__":
    main()
