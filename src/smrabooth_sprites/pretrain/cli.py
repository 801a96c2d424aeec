"""Command line of scripts/train_sprites.py (kept in the package so the tests call it in-process)."""

from __future__ import annotations

import argparse
import sys
import time

from smrabooth.errors import SmraboothError

from .common import STAGES, STATE_FILE, StageConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train_sprites.py",
        description="Pretrain the SMRA-Sprites models (docs/sprites-models.md). Each stage keeps its state in "
        "OUT/<stage>/ and stops after --steps or --minutes, whichever comes first; --resume continues it exactly.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("stage", choices=[*STAGES, "assemble", "all"],
                   help="all: vae, dit, dinov2, searaft, then assemble (for CPU smoke runs)")
    p.add_argument("--out", required=True, help="training folder (one sub-folder per stage)")
    p.add_argument("--preset", default=None,
                   help="model sizes: small (shipped) or tiny (tests); default small, assemble: the stages' own")
    p.add_argument("--minutes", type=float, default=9.0, help="wall time of this call, setup included")
    p.add_argument("--steps", type=int, default=1_000_000, help="total steps of the stage (over all calls)")
    p.add_argument("--batch", type=int, default=0, help="clips per step (0: the stage's default)")
    p.add_argument("--lr", type=float, default=0.0, help="AdamW learning rate (0: the stage's default)")
    p.add_argument("--warmup", type=int, default=-1, help="linear warmup steps (-1: the stage's default)")
    p.add_argument("--clips", type=int, default=0,
                   help="distinct training clips (0: a new clip for every example; N: cycle through N)")
    p.add_argument("--resume", action="store_true", help="continue the stage from its state.pt")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    p.add_argument("--workers", type=int, default=None, help="data worker processes (default min(8, cpus-1))")
    p.add_argument("--seed", type=int, default=0, help="start weights and training randomness")
    p.add_argument("--mixed-precision", default="auto", choices=["auto", "bf16", "no"],
                   help="auto: bf16 autocast on CUDA only")
    p.add_argument("--ema", type=float, default=-1.0,
                   help="dit: EMA decay of the weights, shipped by assemble (0: none; -1: the default 0.999)")
    p.add_argument("--stats-clips", type=int, default=256, help="vae: clips for the latent mean/std")
    p.add_argument("--bundle-out", default=None, help="assemble: bundle folder (default OUT/bundle)")
    p.add_argument("--overwrite", action="store_true", help="assemble: replace an existing bundle folder")
    p.add_argument("--version", default=None, help="assemble: a label for the bundle in sprites.json (e.g. v5)")
    p.add_argument("--partial", action="store_true", help="assemble: keep random weights for untrained stages")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--base", default="", help="assemble: bundle supplying the parts with no stage folder "
                                                "(default: the dit stage's --init-from)")
    p.add_argument("--init-from", default="", help="vae, dit: start the VAE / transformer from this bundle's weights")
    p.add_argument("--sprite-weight", type=float, default=0.0,
                   help="vae: loss weight 1 + W on sprite pixels; dit: on latent cells the sprite touches (exact "
                        "masks), so the few percent of sprite pixels are not drowned by the flat background (0: none)")
    p.add_argument("--frames", type=int, default=0,
                   help="frames per training clip, 4k+1 (0: the preset's). Not for the vae stage: its later latent "
                        "frames run through the causal cache, which shorter clips never train (benchmarks/history/sprites-v1.md)")
    p.add_argument("--pool", type=int, default=0,
                   help="dit: encode this many clips once per call and train from their latents on the GPU "
                        "(0: render every example; rendering is what limits the DiT on a GPU)")
    p.add_argument("--image-fraction", type=float, default=0.0,
                   help="dit: share of steps on one-frame stills instead of clips (joint image-video training, "
                        "so a subject LoRA trained on images starts from something the DiT can draw)")
    p.add_argument("--stills", type=int, default=0,
                   help="dit: distinct stills, rendered and encoded once per call (0: 10,000 with --image-fraction)")
    p.add_argument("--decoder-only", action="store_true",
                   help="vae: train only the decoder, on the frozen encoder's latents (needs --init-from): the "
                        "bundle's DiT stays valid")
    p.add_argument("--sprite-scale", type=float, default=1.0,
                   help="dit: multiply the clips' sprite radius (cut where the motion would leave the frame), so "
                        "videos have room for the designs the subject photos show")
    p.add_argument("--partial-captions", type=float, default=0.0,
                   help="dit: leave the colour, the texture and the motion out of a caption, each with this "
                        "probability ('a star on a blue background'), as the method's prompts name only a "
                        "class noun and S*")
    return p


def stage_config(args, stage: str) -> StageConfig:
    return StageConfig(stage=stage, out=args.out, preset=args.preset or "small", steps=args.steps, minutes=args.minutes,
                       batch=args.batch, lr=args.lr, warmup=args.warmup, seed=args.seed, clips=args.clips,
                       device=args.device, workers=args.workers, mixed_precision=args.mixed_precision,
                       progress=not args.no_progress, stats_clips=args.stats_clips,
                       ema=args.ema, init_from=args.init_from, pool=args.pool,
                       sprite_weight=args.sprite_weight, frames=args.frames,
                       image_fraction=args.image_fraction, stills=args.stills, sprite_scale=args.sprite_scale,
                       partial_captions=args.partial_captions, decoder_only=args.decoder_only)


def run(args) -> int:
    from pathlib import Path

    from . import assemble_bundle, run_stage

    stages = [*STAGES, "assemble"] if args.stage == "all" else [args.stage]
    for stage in stages:
        if stage == "assemble":
            path = assemble_bundle(args.out, args.bundle_out, preset=args.preset, seed=args.seed,
                                   overwrite=args.overwrite or args.stage == "all", partial=args.partial,
                                   base=args.base or None, version=args.version)
            print(f"wrote the bundle {path}")
            continue
        # `all --resume` resumes the stages that exist and starts the others
        resume = args.resume and (args.stage != "all" or (Path(args.out) / stage / STATE_FILE).is_file())
        run_stage(stage_config(args, stage), resume=resume, t0=time.time())
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SmraboothError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
