"""Data-parallel LoRA training: samples per second on 1 and N GPUs for both trainers, at the real Wan2.1-1.3B
size with random weights; with --costs, also the per-unit times of `smrabooth reproduce`'s cost table.

    NCCL_NVLS_ENABLE=0 python benchmarks/bench_multigpu.py --processes 1,2 --steps 30
    NCCL_NVLS_ENABLE=0 python benchmarks/bench_multigpu.py --processes 1,2 --steps 30 --costs
    python benchmarks/bench_multigpu.py --size tiny --processes 1,2 --steps 3        # CPU check of the script

Each (trainer, process count) is one `torchrun --nproc-per-node N` call of this script in worker mode:
every process builds the same seeded random model on its GPU and runs the real trainer
(`train_subject` / `train_motion`) with `--batch-size` samples per process, so the effective batch is
N x batch size. s/step is the median optimizer step after the warm-up steps, from the run's log.jsonl;
samples/s = effective batch / s/step. `--set key=value` sets any trainer config field (e.g. a recipe
field) in every run. The last lines printed are the table; the JSON goes to $OUT/bench_multigpu.json
when $OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TRAINERS = ("subject", "motion", "motion_nomora")


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# ---------------------------------------------------------------- worker: one trainer run under torchrun
def build_models(size: str, device, trainer: str):
    """(pipe, encoder, flow_model): the same seeded random weights in every process."""
    torch.manual_seed(0)
    if size == "tiny":
        from smrabooth.models.dinov2 import build_tiny_dinov2
        from smrabooth.models.tiny import build_tiny_wan_pipeline

        pipe = build_tiny_wan_pipeline().to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe, build_tiny_dinov2().to(device), None
    from bench_motion_train import searaft_m
    from bench_subject_train import dinov2_giant, wan_13b_pipeline

    with torch.device(device):
        pipe = wan_13b_pipeline(device, torch.bfloat16)
        encoder = dinov2_giant(device) if trainer == "subject" else None
        flow = searaft_m(device) if trainer == "motion" else None
    return pipe, encoder, flow


def worker(args) -> None:
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    pipe, encoder, flow = build_models(args.size, device, args.trainer)
    tmp = Path(args.workdir)
    tiny = args.size == "tiny"
    common = dict(model=f"bench-{args.size}", steps=args.steps, batch_size=args.batch_size,
                  checkpoint_every=args.steps, cache_dir=str(tmp / f"cache{local}"), save_dtype="fp32" if tiny else "bf16",
                  **parse_sets(args.set))
    out = tmp / f"run-{args.trainer}-{args.tag}"
    if args.trainer == "subject":
        from bench_subject_train import subject_folder

        from smrabooth.train.subject import SubjectTrainConfig, train_subject

        data = tmp / f"data-subject-{args.tag}-{local}"
        cfg = SubjectTrainConfig(data=str(subject_folder(data)), out=str(out), rank=32, alpha=32,
                                 resolution=64 if tiny else 512, projector_width=16 if tiny else 2048,
                                 gradient_checkpointing=not tiny, **common)
        train_subject(cfg, pipe, encoder, model_id=cfg.model, progress=False)
    else:
        import bench_motion_train as bm

        from smrabooth.train import motion
        from smrabooth.train.motion import MotionTrainConfig, train_motion

        motion.load_motion_frames = lambda *a, **k: bm.synthetic_frames()
        size = {"frames": 5, "height": 32, "width": 32} if tiny else {"frames": bm.FRAMES, "height": bm.HEIGHT, "width": bm.WIDTH}
        if tiny:
            bm.FRAMES, bm.HEIGHT, bm.WIDTH = 5, 32, 32
        cfg = MotionTrainConfig(data=str(bm.motion_folder(tmp / f"data-motion-{args.tag}-{local}")), out=str(out),
                                rank=64, alpha=64, use_mora=args.trainer == "motion" and not tiny,
                                gradient_checkpointing=not tiny, **size, **common)
        train_motion(cfg, pipe, flow, model_id=cfg.model, progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
        secs = np.diff([0.0] + [r["seconds"] for r in log])
        record = json.loads((out / "parallel.json").read_text()) if (out / "parallel.json").is_file() else {}
        Path(args.result).write_text(json.dumps({
            "s_per_step": float(np.median(secs[min(args.warmup, len(secs) - 1):])),
            "effective_batch": record.get("effective_batch", args.batch_size),
            "peak_GiB": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}))


# ---------------------------------------------------------------- generation step (for the cost table)
def generation_step_seconds(steps: int = 3) -> float:
    """Seconds per denoising step (with CFG) of the 1.3B model at 49 frames 832x480, one GPU."""
    from bench_subject_train import wan_13b_pipeline

    from smrabooth.sampling import GenerateConfig, sample_video

    device = torch.device("cuda")
    torch.manual_seed(0)
    with torch.device(device):
        pipe = wan_13b_pipeline(device, torch.bfloat16)
    times = []
    cfg = GenerateConfig(prompt="a V* dog", frames=49, height=480, width=832, steps=steps + 1, scheduler="euler")

    def on_step(i, scales):
        torch.cuda.synchronize()
        times.append(time.perf_counter())

    sample_video(pipe, cfg, progress=False, on_step=on_step, output_type="latent")
    return float(np.median(np.diff(times)))


# ---------------------------------------------------------------- the orchestrator
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trainers", default="subject,motion", help=f"comma-separated, from {','.join(TRAINERS)}")
    p.add_argument("--processes", default="1,2", help="process (GPU) counts to compare")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the median")
    p.add_argument("--batch-size", type=int, default=1, help="samples per process per step")
    p.add_argument("--size", choices=["1.3b", "tiny"], default="1.3b")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a trainer config field")
    p.add_argument("--costs", action="store_true", help="also time a generation step (the cost table's units)")
    p.add_argument("--worker", choices=TRAINERS, dest="trainer_worker", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.trainer_worker:
        args.trainer = args.trainer_worker
        return worker(args)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for trainer in args.trainers.split(","):
            for n in (int(x) for x in args.processes.split(",")):
                result = Path(tmp) / f"{trainer}-{n}.json"
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                       __file__, "--worker", trainer, "--workdir", tmp, "--result", str(result), "--tag", str(n),
                       "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
                       "--size", args.size] + [x for s in args.set for x in ("--set", s)]
                t0 = time.time()
                res = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if res.returncode:
                    print(res.stdout[-4000:], res.stderr[-4000:], file=sys.stderr)
                    raise SystemExit(f"{trainer} on {n} process(es) failed")
                r = json.loads(result.read_text())
                r.update(trainer=trainer, processes=n, wall_s=round(time.time() - t0, 1),
                         samples_per_s=r["effective_batch"] / r["s_per_step"])
                rows.append(r)
                print(json.dumps(r), flush=True)
    for r in rows:
        one = next((x for x in rows if x["trainer"] == r["trainer"] and x["processes"] == 1), None)
        r["speedup"] = r["samples_per_s"] / one["samples_per_s"] if one else None
    costs = {}
    if args.costs and torch.cuda.is_available() and args.size == "1.3b":
        costs["generate_s_per_denoising_step_cfg"] = generation_step_seconds()
        for r in rows:
            if r["processes"] == 1:
                costs[f"{r['trainer']}_s_per_step"] = r["s_per_step"]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    out = {"device": device, "size": args.size, "steps": args.steps, "batch_size": args.batch_size,
           "set": args.set, "rows": rows, "costs": costs, "torch": torch.__version__}
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "bench_multigpu.json").write_text(json.dumps(out, indent=1))
    print(f"\n{device}, size {args.size}, {args.steps} steps, batch {args.batch_size} per process")
    print("| trainer | processes | effective batch | s/step | samples/s | vs 1 process | peak GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        peak = f"{r['peak_GiB']:.1f}" if r.get("peak_GiB") else "-"
        print(f"| {r['trainer']} | {r['processes']} | {r['effective_batch']} | {r['s_per_step']:.3f} | "
              f"{r['samples_per_s']:.2f} | {r['speedup'] or float('nan'):.2f}x | {peak} |")
    for k, v in costs.items():
        print(f"cost: {k} = {v:.3f}")


if __name__ == "__main__":
    main()
