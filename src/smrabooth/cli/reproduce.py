"""`smrabooth reproduce`: the paper's experiment (every LoRA, video and score, then the tables) as one
resumable command; one worker per GPU under torchrun / accelerate launch, shards for clusters."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ..reproduce import METHODS, STAGES

    p = subparsers.add_parser(
        "reproduce", help="the paper's whole experiment: train, generate, evaluate, tables (resumable)",
        description="Plan every job of the experiment (each subject and motion LoRA, each video, each evaluation), "
        "run those not done yet, and write Table 1 and the ablation table (docs/reproduce.md). Several GPUs: "
        "torchrun --nproc-per-node N -m smrabooth reproduce ... (one worker per GPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root: subject_customized/<name>/ and "
                   "motion_customized/video/<motion>/ (or folders of subject and motion folders)")
    p.add_argument("--model", required=True, help="text-to-video model (Wan2.1, Wan2.2): hub id or local folder")
    p.add_argument("--out", required=True, help="experiment folder (plan.json, loras/, videos/, scores/, tables/)")
    p.add_argument("--methods", default="wan,wan_loras,smrabooth,no_sura,no_mora",
                   help=f"comma-separated rows, from {','.join(METHODS)}")
    p.add_argument("--seeds", default="0", help="comma-separated generation seeds")
    p.add_argument("--recipe", help="training and sampling recipe, forwarded to the trainers and generate")
    p.add_argument("--prompts", help="test prompts: JSON from `smrabooth prompts` (default: built from the data)")
    p.add_argument("--per-pair", type=int, default=1, help="prompts per subject-motion pair when building them")
    p.add_argument("--backgrounds", help="scenes for built prompts, one per line")
    p.add_argument("--exclude", help="subject,motion pairs to leave out, one per line")
    for stage, cmd in (("subject", "train-subject"), ("motion", "train-motion"), ("generate", "generate"),
                       ("evaluate", "evaluate")):
        p.add_argument(f"--{stage}-args", default="", metavar="ARGS",
                       help=f"flags for every `smrabooth {cmd}` job, as one quoted string")
    p.add_argument("--offline", action="store_true", help="never contact the hub (passed to every job)")
    p.add_argument("--stage", default="all", choices=["all", *STAGES, "report"],
                   help="run one stage only; report: only write the tables (e.g. after copying shards together)")
    p.add_argument("--shard", help="i/n: run this fixed share of every stage (cluster array jobs)")
    p.add_argument("--dry-run", action="store_true", help="print the jobs, what is done, and the GPU-hours left")
    p.add_argument("--gpus", type=int, default=1, help="GPUs the --dry-run wall time is estimated for")
    p.set_defaults(func=run)


def config_from_args(args):
    from ..errors import SmraboothError
    from ..reproduce import ReproduceConfig
    from ..validation import check_number

    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        for seed in seeds:
            check_number("--seeds", seed, 0, 2**63 - 1, integer=True)
    except ValueError:
        raise SmraboothError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise SmraboothError("--seeds is empty")
    return ReproduceConfig(
        data=args.data, model=args.model, out=args.out, methods=tuple(m.strip() for m in args.methods.split(",")
                                                                       if m.strip()),
        seeds=seeds, recipe=args.recipe, prompts=args.prompts, per_pair=args.per_pair, backgrounds=args.backgrounds,
        exclude=args.exclude, subject_args=args.subject_args, motion_args=args.motion_args,
        generate_args=args.generate_args, evaluate_args=args.evaluate_args, offline=args.offline)


def run(args) -> int:
    from pathlib import Path

    from ..reproduce import dry_run_text, parse_shard, plan, run, shard_jobs
    from ..validation import check_number

    check_number("--gpus", args.gpus, 1, 4096, integer=True)
    check_number("--per-pair", args.per_pair, 1, 1000, integer=True)
    cfg = config_from_args(args)
    if args.dry_run:
        jobs = shard_jobs(plan(cfg), parse_shard(args.shard))
        print(dry_run_text(Path(cfg.out), jobs, max(1, args.gpus)))
        return 0
    return run(cfg, stage=args.stage, shard=args.shard)
