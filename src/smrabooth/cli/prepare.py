"""`smrabooth prepare-subject`, `prepare-motion`, `prompts`: user photos and clips -> training folders."""

from __future__ import annotations


def register(subparsers) -> None:
    from ..data.segment import DEFAULT_DETECTOR, DEFAULT_SAM

    p = subparsers.add_parser("prepare-subject", help="photos of a subject -> images/, masks/, metadata.csv")
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument("--name", required=True, help="the subject's class name, e.g. dog (text: 'a picture of V* dog')")
    p.add_argument("--object-prompt", default=None, help="what the detector looks for (default: 'a NAME')")
    p.add_argument("--out", required=True, help="subject folder to write")
    p.add_argument("--segmenter", default="grounding-sam", choices=["grounding-sam", "sam", "none"],
                   help="grounding-sam: detector box -> SAM mask (LangSAM); sam: SAM on the whole image; "
                   "none: no masks")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, help="GroundingDINO hub id or local folder")
    p.add_argument("--sam", default=DEFAULT_SAM, help="SAM hub id or local folder")
    p.add_argument("--masks", default=None, help="folder of your own masks, named like the images (skips SAM)")
    p.add_argument("--box-threshold", type=float, default=0.35, help="detector box score threshold")
    p.add_argument("--text-threshold", type=float, default=0.25, help="detector text score threshold")
    p.add_argument("--mask-threshold", type=float, default=0.5, help="SAM probability -> binary mask")
    p.add_argument("--fill-holes", type=float, default=0.01,
                   help="fill mask holes up to this fraction of the image (0: off, 1: all)")
    p.add_argument("--keep-all-components", action="store_true", help="do not drop all but the largest mask part")
    p.add_argument("--on-not-found", default="skip", choices=["skip", "error"],
                   help="when the detector finds nothing in an image: leave it out (skip) or stop (error)")
    p.add_argument("--max-side", type=int, default=1024, help="shrink photos to this longest side (0: keep)")
    p.add_argument("--token", default="V*", help="subject token in the text")
    p.add_argument("--device", default=None, help="cuda, cpu (default: cuda if available)")
    p.add_argument("--offline", action="store_true", help="never contact the hub (local folders are always offline)")
    p.add_argument("--overwrite", action="store_true", help="replace a prepared set already in --out")
    p.set_defaults(func=run_subject)

    p = subparsers.add_parser("prepare-motion", help="clips of a motion -> trimmed mp4s + metadata.csv")
    p.add_argument("videos", nargs="+", help="video files or folders of videos")
    p.add_argument("--name", required=True, help="motion name, e.g. dribble (clips: NAME_00.mp4 ...)")
    p.add_argument("--caption", default=None,
                   help="caption with the S* token, e.g. 'a person S* dribbling a basketball' (wins over --captioner)")
    p.add_argument("--captioner", default=None,
                   help="image-text-to-text model (hub id or folder) captioning the middle frame, when no --caption")
    p.add_argument("--out", required=True, help="motion folder to write")
    p.add_argument("--frames", type=int, default=49, help="frames per clip (0: the whole trimmed clip)")
    p.add_argument("--fps", type=float, default=15, help="output frame rate (whole number)")
    p.add_argument("--start", type=float, default=0.0, help="trim: start time in seconds")
    p.add_argument("--end", type=float, default=None, help="trim: end time in seconds")
    p.add_argument("--token", default="S*", help="motion token in the caption")
    p.add_argument("--device", default=None)
    p.add_argument("--offline", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace a prepared set already in --out")
    p.set_defaults(func=run_motion)

    p = subparsers.add_parser("prompts", help="test prompts pairing every subject with every motion")
    p.add_argument("--subjects", nargs="+", required=True,
                   help="subject folders, or roots holding subject_customized/<name>/")
    p.add_argument("--motions", nargs="+", required=True,
                   help="motion folders, or roots holding motion_customized/video/<motion>/")
    p.add_argument("--out", required=True, help="JSON file to write, e.g. combine_test_prompts.json")
    p.add_argument("--backgrounds", default=None, help="text file, one scene per line (default: built-in list)")
    p.add_argument("--exclude", default=None, help="text file of 'subject,motion' pairs to leave out ('*' = any)")
    p.add_argument("--per-pair", type=int, default=3, help="backgrounds per subject-motion pair")
    p.add_argument("--ignore-shipped-prompts", action="store_true",
                   help="generate every pair, even those a motion folder's combine_test_prompts.json names")
    p.set_defaults(func=run_prompts)


def _offline(args):
    return True if args.offline else None


def check_subject_args(args) -> None:
    from ..data.prepare_subject import COMMAND, check_out_folder, expand_inputs
    from ..validation import check_device, check_number, check_output_dir, check_readable

    files = expand_inputs(args.images)
    check_output_dir("--out", args.out)
    if args.masks is not None:
        check_readable("--masks", args.masks, "folder")
    check_out_folder(args.out, args.overwrite, COMMAND, {"image": files, "--masks": args.masks})
    for flag in ("box_threshold", "text_threshold", "mask_threshold", "fill_holes"):
        check_number("--" + flag.replace("_", "-"), getattr(args, flag), 0, 1)
    if args.max_side != 0:
        check_number("--max-side", args.max_side, 16, 16384, integer=True)
    check_device("--device", args.device)


def check_motion_args(args) -> None:
    from ..data.folders import VIDEO_EXTS
    from ..data.prepare_motion import check_motion_out
    from ..data.prepare_subject import expand_inputs
    from ..validation import check_device, check_number, check_output_dir

    files = expand_inputs(args.videos, VIDEO_EXTS, "video")
    check_output_dir("--out", args.out)
    check_motion_out(args.out, args.overwrite, args.name.strip(), files)
    check_number("--frames", args.frames, 0, 10000, integer=True)
    check_number("--fps", args.fps, 1, 240, integer=True)
    check_number("--start", args.start, 0, 1e7)
    check_number("--end", args.end, args.start, 1e7, low_open=True, optional=True)
    check_device("--device", args.device)


def run_subject(args) -> int:
    from ..data.masks import MaskSettings
    from ..data.prepare_subject import prepare_subject
    from ..data.segment import GroundingDinoDetector, SamSegmenter, TextPromptedSegmenter
    from .common import use_hub

    check_subject_args(args)
    segmenter = None
    if args.masks is None and args.segmenter != "none":
        use_hub(args, args.sam, args.detector if args.segmenter == "grounding-sam" else None)
        settings = MaskSettings(args.mask_threshold, args.fill_holes, not args.keep_all_components)
        detector = None
        if args.segmenter == "grounding-sam":
            detector = GroundingDinoDetector.from_pretrained(
                args.detector, _offline(args), box_threshold=args.box_threshold,
                text_threshold=args.text_threshold, device=args.device)
        sam = SamSegmenter.from_pretrained(args.sam, _offline(args), device=args.device)
        segmenter = TextPromptedSegmenter(detector, sam, settings)
    prepare_subject(args.images, args.name, args.out, object_prompt=args.object_prompt, segmenter=segmenter,
                    masks_dir=args.masks, on_not_found=args.on_not_found, max_side=args.max_side or None,
                    token=args.token, overwrite=args.overwrite)
    return 0


def run_motion(args) -> int:
    from ..data.prepare_motion import Captioner, prepare_motion
    from .common import use_hub

    check_motion_args(args)
    captioner = None
    if args.caption is None and args.captioner is not None:
        use_hub(args, args.captioner)
        captioner = Captioner.from_pretrained(args.captioner, _offline(args), device=args.device)
    prepare_motion(args.videos, args.name, args.out, caption=args.caption, frames=args.frames, fps=args.fps,
                   start=args.start, end=args.end, captioner=captioner, token=args.token, overwrite=args.overwrite)
    return 0


def run_prompts(args) -> int:
    from pathlib import Path

    from ..data.prompts import (
        SHIPPED,
        build_test_prompts,
        collect_motions,
        collect_shipped_prompts,
        collect_subjects,
        load_backgrounds,
        load_exclusions,
        write_test_prompts,
    )
    from ..validation import check_number, check_output_file, check_readable

    check_number("--per-pair", args.per_pair, 1, 1000, integer=True)
    for flag in ("backgrounds", "exclude"):
        if getattr(args, flag) is not None:
            check_readable(f"--{flag}", getattr(args, flag), "file")
    for flag in ("subjects", "motions"):
        for path in getattr(args, flag):
            check_readable(f"--{flag}", path, "folder")
    shipped_files = [p for root in args.motions for p in Path(root).rglob(SHIPPED)]
    check_output_file("--out", args.out, inputs={"--backgrounds": args.backgrounds, "--exclude": args.exclude,
                                                 "--motions": shipped_files})
    subjects, motions = collect_subjects(args.subjects), collect_motions(args.motions)
    shipped = {} if args.ignore_shipped_prompts else collect_shipped_prompts(args.motions)
    prompts = build_test_prompts(subjects, motions, load_backgrounds(args.backgrounds), args.per_pair,
                                 load_exclusions(args.exclude), shipped)
    path = write_test_prompts(args.out, prompts)
    n_shipped = sum(p["source"] != "generated" for p in prompts)
    from_files = f", {n_shipped} of them from combine_test_prompts.json" if n_shipped else ""
    print(f"wrote {len(prompts)} prompts ({len(subjects)} subjects x {len(motions)} motions{from_files}) to {path}")
    for p in prompts[:3]:
        print(f"  {p['prompt']}")
    return 0
