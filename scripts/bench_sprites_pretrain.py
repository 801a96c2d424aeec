#!/usr/bin/env python
"""Seconds per training step of each SMRA-Sprites pretraining stage (docs/sprites-models.md, Throughput).

    python scripts/bench_sprites_pretrain.py --preset small --steps 4 [--device cuda] [--batch vae=2,dit=4]

Runs every stage for --steps steps into a temporary folder and reports the median time of the steps
after the first (which pays for one-time setup), per step and per clip, plus the time to render one
clip (what the data workers must keep up with).
"""

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time

from smrabooth_sprites.pretrain import STAGES, StageConfig, read_log, run_stage


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--device", default=None)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--batch", default="vae=2,dit=2,dinov2=2,searaft=2", help="stage=batch,...")
    p.add_argument("--stages", default=",".join(STAGES))
    args = p.parse_args()
    batches = {k: int(v) for k, v in (kv.split("=") for kv in args.batch.split(","))}
    from smrabooth_sprites import sample_clip
    from smrabooth_sprites.bundle import get_preset

    preset = get_preset(args.preset)
    t = time.time()
    for s in range(10):
        sample_clip(s, "train", preset.frames, preset.size)
    results = {"render_clip_s": round((time.time() - t) / 10, 4)}
    with tempfile.TemporaryDirectory() as out:
        for stage in args.stages.split(","):
            batch = batches.get(stage, 2)
            t = time.time()
            run_stage(StageConfig(stage=stage, out=out, preset=args.preset, steps=args.steps, batch=batch,
                                  device=args.device, workers=args.workers, progress=False, stats_clips=8))
            seconds = [r["seconds"] for r in read_log(f"{out}/{stage}/log.jsonl")]
            per_step = statistics.median(b - a for a, b in itertools.pairwise(seconds))
            results[stage] = {"batch": batch, "s_per_step": round(per_step, 3),
                              "s_per_clip": round(per_step / batch, 3), "call_s": round(time.time() - t, 1)}
            print(stage, json.dumps(results[stage]), flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
