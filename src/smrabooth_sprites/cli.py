"""The lab's commands, registered into `smrabooth` through the `smrabooth.commands` entry point group:
`smrabooth demo`, `smrabooth bench sprites` (docs/demo.md, docs/bench-sprites.md) and `smrabooth sprites
sample|subject|motion` (docs/sprites.md). This module parses flags and calls runs.py, report.py and
folders.py; the demo and the bench run on a model bundle (`--model DIR`, default: the one shipped with
smrabooth_sprites)."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from smrabooth.cli.common import add_config_arguments, config_from_args
from smrabooth.errors import SmraboothError
from smrabooth.validation import check_number

from .experiment import DEMO_SETTINGS, ExperimentSettings

BENCH = ExperimentSettings()  # the bench's defaults: the recipe's method as written, the lab's sizes


def register(subparsers) -> None:
    """Add `demo`, `bench` and `sprites` to smrabooth's subcommands."""
    register_demo(subparsers)
    register_bench(subparsers)
    register_sprites(subparsers)


# ------------------------------------------------------------------------------------------ demo and bench
def register_demo(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="SMRA-Sprites demo: train subject+motion LoRAs on a held-out sprite and motion, generate, report",
        description="Trains a subject LoRA (SuRA) on stills of a held-out sprite and a motion LoRA (MoRA) on clips of a "
        "held-out motion, generates the combined prompt with sparse LoRA injection and without LoRAs (same seed), "
        "scores both against the ground truth and writes report.html.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_arguments(p, ExperimentSettings, defaults=DEMO_SETTINGS)
    p.add_argument("--out", default="smrabooth-demo", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an --out folder that holds a previous run")
    p.add_argument("--seed", type=int, default=0, help="generation seed (the baseline uses the same)")
    p.add_argument("--subject", default="heart", help="held-out subject (heart, star, hexagon, crescent or 0..3)")
    p.add_argument("--motion", default="spiral", help="held-out motion family (figure-eight or spiral)")
    p.set_defaults(func=run_demo, settings_defaults=DEMO_SETTINGS)


def register_bench(subparsers) -> None:
    b = subparsers.add_parser("bench", help="benchmarks (sprites: held-out subjects x motions x ablations)")
    sub = b.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    s = sub.add_parser(
        "sprites", help="SMRA-Sprites benchmark: cases x variants, scored against the ground truth",
        description="Runs every (held-out subject, held-out motion) case with every variant and seed, and prints "
        "the paper-style table (variant rows x metric columns, mean ± 95%% interval over cases and seeds).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_arguments(s, ExperimentSettings, defaults=BENCH)
    s.add_argument("--out", required=True, help="output folder (results.json, results.csv, table.md, cases/)")
    s.add_argument("--overwrite", action="store_true", help="replace an --out folder that holds a previous run")
    s.add_argument("--subjects", default=None,
                   help="N (the first N held-out subjects) or names/indices: heart,star (default: all 4)")
    s.add_argument("--motions", default=None, help="held-out families: figure-eight,spiral (default: both)")
    s.add_argument("--seeds", type=int, default=3, help="generation seeds per case and variant (0..N-1)")
    s.add_argument("--variants", default="full,no_sura,no_mora,base",
                   help="comma list of: full, no_sura, no_mora, dense, base, subject_only, motion_only, "
                        "tpoint_{5,15,25,45}, early_{0.1,0.5,0.8}, subject_all_layers, motion_all_layers")
    s.add_argument("--no-subject-stills", action="store_true",
                   help="skip the second table: one-frame stills of 'a picture of V* <shape>' with each subject "
                        "LoRA alone and without one (whether a LoRA learned the subject, apart from the video)")
    s.add_argument("--resume", action="store_true",
                   help="continue in --out instead of refusing it: reuse its trained LoRAs (e.g. to add variants) "
                        "and keep the videos and scores of an earlier call with the same settings")
    s.add_argument("--jobs", type=int, default=1,
                   help="cases run at once, one process each (e.g. 8 on one GPU: the lab's models are small); CPU "
                        "threads are split between them; each case's log is in OUT/parts/<case>/log.txt")
    s.set_defaults(func=run_bench, settings_defaults=BENCH)


def recipe_line(settings) -> str:
    """Which recipe trained the LoRAs of a demo or bench run (the lab's default is paper)."""
    return (f"recipe {settings.recipe}: the LoRAs' training defaults (the lab's steps, rank, lr and sizes on top; "
            f"--recipe to choose); videos sampled with the lab's sampler")


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SmraboothError("--device cuda: no CUDA device is available here; use --device cpu")


def settings_from_args(args, out: Path | str = "") -> ExperimentSettings:
    """The flags over the command's defaults (DEMO_SETTINGS, or the bench's), checked; the bundle not yet read."""
    return config_from_args(ExperimentSettings, args, base=replace(args.settings_defaults, out=str(out)))


def _settings(args, out: Path):
    """The run's settings (`settings_from_args`), then the bundle (resolved and checked: its sizes fill the
    settings) and the device."""
    from .experiment import resolve_bundle, settings_for_bundle

    settings = settings_from_args(args, out)
    settings.model = str(resolve_bundle(settings.model or None))
    check_device(settings.device)
    if not settings.progress:  # also the libraries' "Loading weights" bars, which would fill a log
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    return settings_for_bundle(settings)


def run_demo(args) -> int:
    from .experiment import Case, default_background, parse_motions, parse_subjects
    from .report import demo_summary, finish_out, prepare_out, restore_out
    from .runs import make_demo
    from .world import HELDOUT_SUBJECTS

    start = time.time()
    check_number("--seed", args.seed, 0, 2**63 - 1, integer=True)
    subjects = parse_subjects(f"{args.subject},", "--subject")  # the trailing comma: "0" is subject 0, not "the first 0"
    if len(subjects) != 1:
        raise SmraboothError("--subject: name one held-out subject")
    family = parse_motions(args.motion)
    if len(family) != 1:
        raise SmraboothError("--motion: name one held-out motion family")
    case = Case(subjects[0], family[0], default_background(HELDOUT_SUBJECTS[subjects[0]]))
    # resolve the bundle before touching --out, so a bad --model leaves nothing behind
    settings = _settings(args, Path(args.out) / "work")
    out = prepare_out(args.out, args.overwrite, inputs={"--model": settings.model})
    try:
        metrics = make_demo(settings, case, args.seed, out)
    except BaseException:
        restore_out(out)  # a run set aside by --overwrite comes back
        raise
    finish_out(out, "demo")
    print(demo_summary(metrics["result"], metrics["baseline"]))
    print(recipe_line(settings))
    print(f"demo written to {out.resolve()} (open report.html) in {time.time() - start:.0f}s")
    return 0


def run_bench(args) -> int:
    if args.bench_command != "sprites":  # argparse already restricts it; kept for direct calls
        raise SmraboothError(f"unknown benchmark {args.bench_command!r}: choose sprites")
    from . import runs
    from .experiment import make_cases, parse_motions, parse_subjects, parse_variants
    from .report import finish_out, prepare_out, restore_out

    start = time.time()
    variants = parse_variants(args.variants)
    cases = make_cases(parse_subjects(args.subjects), parse_motions(args.motions))
    check_number("--seeds", args.seeds, 1, 1000, integer=True)
    check_number("--jobs", args.jobs, 1, 1024, integer=True)
    settings = _settings(args, Path(args.out))
    out = prepare_out(args.out, args.overwrite, resume=args.resume, inputs={"--model": settings.model},
                      command="bench sprites")
    seeds, stills = list(range(args.seeds)), not args.no_subject_stills
    try:
        if args.jobs > 1 and len(cases) > 1:
            table = runs.run_bench_parallel(settings, cases, variants, seeds, out, min(args.jobs, len(cases)),
                                            resume=args.resume, subject_stills=stills)
        else:
            table = runs.run_bench(settings, cases, variants, seeds, out, resume=args.resume, subject_stills=stills)
    except BaseException:
        restore_out(out)  # a run set aside by --overwrite comes back; a resumable one stays otherwise
        raise
    finish_out(out, "bench sprites")
    print(table["table"])
    print(recipe_line(settings))
    print(f"wrote results.json, results.csv and table.md to {out.resolve()} in {time.time() - start:.0f}s")
    return 0


# ------------------------------------------------------------------------------------------ sprites
def register_sprites(subparsers) -> None:
    p = subparsers.add_parser("sprites", help="the SMRA-Sprites world: sample clips, write subject/motion folders")
    sub = p.add_subparsers(dest="sprites_command", metavar="ACTION", required=True)

    s = sub.add_parser("sample", help="random clips as mp4 + contact sheet of first frames + captions.txt")
    s.add_argument("--out", required=True, help="folder to create")
    s.add_argument("--n", type=int, default=8, help="number of clips (seeds seed .. seed+n-1)")
    s.add_argument("--split", default="train", choices=["train", "heldout"])
    _add_clip_args(s)
    s.set_defaults(func=run_sample)

    s = sub.add_parser("subject", help="a subject folder (images/, masks/, metadata.csv) of one design")
    s.add_argument("--out", required=True, help="folder to create")
    s.add_argument("--design", default="heldout:0",
                   help="heldout:N (N-th held-out subject) or shape,color,texture[,texture_color], "
                   "e.g. star,red,striped,white")
    s.add_argument("--n", type=int, default=8, help="number of images")
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--background", default=None, help="one background colour for all images (default: random)")
    s.add_argument("--name", default=None, help="class noun after V* (default: the shape)")
    s.set_defaults(func=run_subject)

    s = sub.add_parser("motion", help="a motion folder (mp4 + ground truth + metadata.csv) of one family")
    s.add_argument("--out", required=True, help="folder to create")
    s.add_argument("--family", required=True, help="motion family, e.g. circle or figure-eight")
    s.add_argument("--n", type=int, default=4, help="number of clips (random designs and backgrounds)")
    _add_clip_args(s)
    s.set_defaults(func=run_motion)


def _add_clip_args(p) -> None:
    p.add_argument("--frames", type=int, default=17, help="frames per clip (4k+1 for Wan: 17, 49)")
    p.add_argument("--size", type=int, default=128, help="frame width and height in pixels (even)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=15)


def parse_design(text: str):
    from .world import HELDOUT_SUBJECTS, SpriteDesign

    if text.startswith("heldout:"):
        try:
            return HELDOUT_SUBJECTS[int(text.split(":", 1)[1])]
        except (ValueError, IndexError):
            raise SmraboothError(f"--design {text}: use heldout:0 .. heldout:{len(HELDOUT_SUBJECTS) - 1}") from None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 3 and parts[2] == "solid":
        parts.append(parts[1])
    if len(parts) != 4:
        raise SmraboothError(f"--design {text}: expected shape,color,texture,texture_color (e.g. star,red,striped,"
                             f"white) or heldout:N")
    return SpriteDesign(*parts)


def check_clip_args(args, n_high: int = 10_000) -> None:
    """The sprite world's numbers, checked before anything is drawn (10^400 clips is one line, not a crash or a
    run that never ends)."""
    check_number("--n", args.n, 1, n_high, integer=True)
    check_number("--size", args.size, 8, 2048, integer=True)
    check_number("--seed", args.seed, 0, 2**32 - 1, integer=True)
    if hasattr(args, "frames"):
        check_number("--frames", args.frames, 2, 1001, integer=True)
        check_number("--fps", args.fps, 0, 240, low_open=True)


def run_sample(args) -> int:
    from .folders import write_sample_clips

    check_clip_args(args)
    out = write_sample_clips(args.out, args.n, args.split, args.frames, args.size, args.seed, args.fps)
    print(f"wrote {args.n} {args.split} clips, contact_sheet.png and captions.txt to {out}")
    return 0


def run_subject(args) -> int:
    from .folders import subject_text, write_subject_folder

    check_clip_args(args)
    design = parse_design(args.design)
    out = write_subject_folder(args.out, design, args.n, args.seed, args.size, args.background, args.name)
    print(f"wrote {args.n} images of the {design.words()} (texture colour {design.texture_color}) to {out}, "
          f"captioned '{subject_text(design, args.name)}'")
    return 0


def run_motion(args) -> int:
    from .folders import write_motion_folder
    from .world import sample_family_clips

    check_clip_args(args)
    clips = sample_family_clips(args.family, args.n, args.seed, args.frames, args.size)
    out = write_motion_folder(args.out, clips, fps=args.fps)
    print(f"wrote {args.n} {args.family} clips ({args.frames} frames, {args.size}px) to {out}")
    return 0
