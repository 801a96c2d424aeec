"""`smrabooth reproduce`: the paper's experiment (every LoRA, video and score, then the tables) as one
resumable command; one worker per GPU under torchrun / accelerate launch, shards for clusters."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ..reproduce import STAGES, ReproduceConfig
    from .common import add_config_arguments

    p = subparsers.add_parser(
        "reproduce", help="the paper's whole experiment: train, generate, evaluate, tables (resumable)",
        description="Plan every job of the experiment (each subject and motion LoRA, each video, each evaluation), "
        "run those not done yet, and write Table 1 and the ablation table (docs/reproduce.md). Several GPUs: "
        "torchrun --nproc-per-node N -m smrabooth reproduce ... (one worker per GPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_arguments(p, ReproduceConfig)  # the experiment's settings: one flag per field
    # how this call runs the plan (not part of the experiment)
    p.add_argument("--stage", default="all", choices=["all", *STAGES, "report"],
                   help="run one stage only; report: only write the tables (e.g. after copying shards together)")
    p.add_argument("--shard", help="i/n: run this fixed share of every stage (cluster array jobs)")
    p.add_argument("--dry-run", action="store_true", help="print the jobs, what is done, and the GPU-hours left")
    p.add_argument("--gpus", type=int, default=1, help="GPUs the --dry-run wall time is estimated for")
    p.set_defaults(func=run)


def config_from_args(args):
    """The experiment's settings from the flags (ReproduceConfig's defaults under them), validated."""
    from ..reproduce import ReproduceConfig
    from .common import config_from_args as settings_from

    return settings_from(ReproduceConfig, args)


def run(args) -> int:
    from pathlib import Path

    from ..reproduce import dry_run_text, parse_shard, plan, run, shard_jobs
    from ..validation import check_number

    check_number("--gpus", args.gpus, 1, 4096, integer=True)
    cfg = config_from_args(args)
    if args.dry_run:
        jobs = shard_jobs(plan(cfg), parse_shard(args.shard))
        print(dry_run_text(Path(cfg.out), jobs, max(1, args.gpus)))
        return 0
    return run(cfg, stage=args.stage, shard=args.shard)
