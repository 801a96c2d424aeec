"""`smrabooth evaluate`: the paper's nine metrics over videos or a whole experiment (manifest)."""

from __future__ import annotations

from pathlib import Path

VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif"}


def register(subparsers) -> None:
    from ..metrics.motion_fidelity import LENGTH_RULES as MF_LENGTHS
    from ..metrics.motion_fidelity import VARIANTS as MF_VARIANTS
    from ..metrics.runner import METRICS, TRACKERS

    p = subparsers.add_parser("evaluate", help="score videos with the paper's nine metrics; write table + reports",
                              description="Score generated videos (CLIP-T, CLIP-I, DINO-I, Motion Fidelity, Subject "
                              "Consistency, Temporal Consistency, PickScore, Aesthetic and Imaging Quality) and write "
                              "results.json, per_video.csv, table.csv, table.txt and report.html to --out.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", nargs="+", help="video files and/or folders of videos")
    src.add_argument("--manifest", help="CSV with columns method,video,prompt,subject_images,reference_video "
                     "(paths relative to the CSV)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", default="videos", help="method name for --videos (table row)")
    p.add_argument("--subject-images", help="folder of reference images (CLIP-I, DINO-I), for --videos")
    p.add_argument("--reference-video", help="motion reference video (Motion Fidelity), for --videos")
    p.add_argument("--prompts", help="prompts for --videos: .txt (one line per video, in the order given; folders "
                   "by name), .json ({file name or stem: prompt}) or .csv (video,prompt)")
    p.add_argument("--metrics", default=",".join(METRICS), help=f"comma-separated subset of {','.join(METRICS)}")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available; fp16 on GPU)")
    p.add_argument("--batch-size", type=int, default=32, help="frames per model call")
    p.add_argument("--offline", action="store_true", help="never contact the hub (also: HF_HUB_OFFLINE=1)")
    p.add_argument("--report-videos", choices=["auto", "embed", "link", "none"], default="auto",
                   help="videos in report.html: embed (one portable file), link (paths relative to --out), none; "
                   "auto embeds them when together they take at most 64 MB, else links them")
    m = p.add_argument_group("models (hub id or local folder)")
    m.add_argument("--clip-model", default="openai/clip-vit-base-patch32", help="CLIP-T, CLIP-I, temporal consistency")
    m.add_argument("--dino-model", default="facebook/dinov2-base",
                   help="DINO-I: facebook/dinov2-{small,base,large,giant}, or facebook/dino-vits16 (DreamVideo)")
    m.add_argument("--subject-model", default="facebook/dino-vitb16", help="subject consistency (VBench: DINO ViT-B/16)")
    m.add_argument("--pickscore-model", default="yuvalkirstain/PickScore_v1")
    m.add_argument("--pickscore-processor", default="laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    m.add_argument("--aesthetic-clip-model", default="openai/clip-vit-large-patch14")
    m.add_argument("--aesthetic-head", help="LAION sa_0_4_vit_l_14_linear.pth (required for aesthetic)")
    m.add_argument("--musiq-checkpoint", help="pyiqa MUSIQ-SPAQ checkpoint file (imaging; else pyiqa's default)")
    o = p.add_argument_group("metric options")
    o.add_argument("--temporal-pairs", choices=["adjacent", "all"], default="adjacent")
    o.add_argument("--mf-variant", choices=list(MF_VARIANTS), default="released",
                   help="released: the released script's score, which the paper's numbers follow (per generated "
                   "track its best reference track, identity subtracted); two-sided: Eq. 5 as written, halved; "
                   "reference-to-generated: the released formula with the roles swapped")
    o.add_argument("--mf-grid", type=int, default=55, help="query grid size on frame 0 (CoTracker's grid_size)")
    o.add_argument("--mf-support-grid", action="store_true",
                   help="CoTracker: also track its 6x6 support grid (the reference adds it only with a mask)")
    o.add_argument("--mf-box", help="x0,y0,x1,y1: only query points in this box (pixels of the generated video)")
    o.add_argument("--mf-length", choices=list(MF_LENGTHS), default="first",
                   help="a reference with more frames than the generated video: first (its first frames, as the "
                   "paper compares 49 generated frames with the clips' first 49), resample (spread over the "
                   "generated length) or error")
    o.add_argument("--mf-drop-occluded", action="store_true",
                   help="leave out each video's tracks occluded at any frame (the identity still pairs tracks by "
                   "query point)")
    o.add_argument("--tracker", choices=list(TRACKERS), default="auto",
                   help="auto: CoTracker3 (the paper's) when --cotracker-checkpoint is given or torch.hub has it "
                   "cached, else Motion Fidelity is skipped with the reason; searaft: the built-in SEA-RAFT flow "
                   "chaining (not comparable with the paper's numbers)")
    o.add_argument("--cotracker-checkpoint", help="local CoTracker3 checkpoint (e.g. scaled_offline.pth)")
    o.add_argument("--cotracker-repo", help="local clone of facebookresearch/co-tracker (if not pip-installed)")
    o.add_argument("--searaft-model", help="SEA-RAFT checkpoint (hub id or local path) for the built-in tracker")
    o.add_argument("--searaft-iters", type=int, default=None)
    p.set_defaults(func=run)


def _videos_in(paths) -> list[Path]:
    from ..errors import SmraboothError

    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise SmraboothError(f"{p} has no videos ({', '.join(sorted(VIDEO_SUFFIXES))})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise SmraboothError(f"video {p} does not exist")
    return out


def read_prompts(path, videos: list[Path]) -> list[str]:
    """One prompt per video from a .txt (one line each), .json ({file name or stem: prompt}) or .csv (video,prompt)
    file; a file of another shape is one line naming it (readers.py: a BOM, Latin-1, nesting)."""
    from ..errors import SmraboothError
    from ..readers import read_csv, read_json, read_text

    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"prompts file {path} does not exist")
    if path.suffix.lower() == ".json":
        table = read_json(path, dict, "a prompts file")
        odd = next((k for k, v in table.items() if not isinstance(v, str)), None)
        if odd is not None:
            raise SmraboothError(f"{path}: the prompt of {odd!r} is not text; a prompts file maps file names to "
                                 "prompts ({\"a.mp4\": \"a dog running\"})")
    elif path.suffix.lower() == ".csv":
        header, rows = read_csv(path, "prompts file")
        if not {"video", "prompt"} <= set(header):
            raise SmraboothError(f"{path} has the columns {','.join(header) or '(none)'}; a prompts CSV needs "
                                 "video,prompt")
        table = {}
        for line, r in rows:
            if r["video"] in table and table[r["video"]] != r["prompt"]:
                raise SmraboothError(f"{path} line {line}: {r['video']} has a second, different prompt")
            table[r["video"]] = r["prompt"]
    else:
        lines = [ln.strip() for ln in read_text(path, "prompts file").splitlines() if ln.strip()]
        if len(lines) != len(videos):
            raise SmraboothError(f"{path} has {len(lines)} prompts for {len(videos)} videos: give one line per "
                                 "video in sorted file order, or use a .json/.csv mapping")
        return lines
    out = []
    for v in videos:
        prompt = table.get(v.name, table.get(v.stem, table.get(str(v))))
        if prompt is None:
            raise SmraboothError(f"{path} has no prompt for {v.name} (keys are file names or stems)")
        out.append(prompt)
    return out


def read_manifest(path) -> list:
    """The rows of an evaluation (or study) manifest: method,video[,prompt,subject_images,reference_video], paths
    relative to the CSV. A BOM and Latin-1 are read; a row repeating an earlier (method, video) is dropped with a
    warning, one giving it another prompt or reference is an error."""
    import sys

    from ..errors import SmraboothError
    from ..metrics.runner import EvalItem, expand_subject_images
    from ..readers import read_csv

    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"manifest {path} does not exist")
    header, rows = read_csv(path, "manifest")
    missing = {"method", "video"} - set(header)
    if missing:
        raise SmraboothError(f"manifest {path} lacks column(s) {', '.join(sorted(missing))}; expected "
                             "method,video,prompt,subject_images,reference_video")
    base = path.parent
    resolve = lambda p: (base / p) if not Path(p).is_absolute() else Path(p)
    items, seen = [], {}
    for i, r in rows:  # line numbers as a spreadsheet shows them
        if not r["method"] or not r["video"]:
            raise SmraboothError(f"manifest {path} line {i}: empty {'method' if not r['method'] else 'video'}")
        video = resolve(r["video"])
        if not video.is_file():
            raise SmraboothError(f"manifest {path} line {i}: video {video} does not exist")
        subj = []
        if r.get("subject_images"):
            subj_path = ";".join(str(resolve(s.strip())) for s in r["subject_images"].split(";") if s.strip())
            try:
                subj = expand_subject_images(subj_path)
            except SmraboothError as e:
                raise SmraboothError(f"manifest {path} line {i}: {e}") from None
        ref = r.get("reference_video") or ""
        ref = resolve(ref) if ref else None
        if ref is not None and not ref.is_file():
            raise SmraboothError(f"manifest {path} line {i}: reference video {ref} does not exist")
        item = EvalItem(r["method"], video, r.get("prompt") or None, subj, ref)
        key = (item.method, str(video.resolve()))
        if key in seen:
            first, earlier = seen[key]
            if (earlier.prompt, earlier.subject_images, earlier.reference_video) != (item.prompt, subj, ref):
                raise SmraboothError(f"manifest {path} line {i}: {item.method} {r['video']} was listed on line {first} "
                                     f"with another prompt or reference; keep one row per video")
            print(f"warning: manifest {path} line {i} repeats line {first} ({item.method} {r['video']}); counted once",
                  file=sys.stderr)
            continue
        seen[key] = (i, item)
        items.append(item)
    if not items:
        raise SmraboothError(f"manifest {path} lists no videos")
    return items


def items_from_args(args) -> list:
    from ..metrics.runner import EvalItem, expand_subject_images

    if args.manifest:
        return read_manifest(args.manifest)
    videos = _videos_in(args.videos)
    prompts = read_prompts(args.prompts, videos) if args.prompts else [None] * len(videos)
    subj = expand_subject_images(args.subject_images) if args.subject_images else []
    ref = Path(args.reference_video) if args.reference_video else None
    if ref is not None and not ref.is_file():
        from ..errors import SmraboothError
        raise SmraboothError(f"reference video {ref} does not exist")
    return [EvalItem(args.method, v, p, subj, ref) for v, p in zip(videos, prompts)]


def settings_from_args(args):
    from ..errors import SmraboothError
    from ..metrics.runner import EvalSettings

    box = None
    if args.mf_box:
        try:
            box = tuple(float(x) for x in args.mf_box.split(","))
            assert len(box) == 4
        except (ValueError, AssertionError):
            raise SmraboothError(f"--mf-box must be x0,y0,x1,y1 in pixels, got {args.mf_box!r}") from None
    return EvalSettings(
        device=args.device, batch_size=args.batch_size, local_files_only=True if args.offline else None,
        clip_model=args.clip_model, dino_model=args.dino_model, subject_model=args.subject_model,
        pickscore_model=args.pickscore_model, pickscore_processor=args.pickscore_processor,
        aesthetic_clip_model=args.aesthetic_clip_model, aesthetic_head=args.aesthetic_head,
        musiq_checkpoint=args.musiq_checkpoint, temporal_pairs=args.temporal_pairs, mf_variant=args.mf_variant,
        mf_grid=args.mf_grid, mf_support_grid=args.mf_support_grid, mf_box=box, mf_length=args.mf_length,
        mf_drop_occluded=args.mf_drop_occluded,
        tracker=args.tracker, cotracker_checkpoint=args.cotracker_checkpoint, cotracker_repo=args.cotracker_repo,
        searaft_model=args.searaft_model, searaft_iters=args.searaft_iters)


def check_args(args) -> None:
    """Every setting of evaluate, before any video is read or model loaded."""
    from ..validation import check_device, check_number, check_output_dir, check_output_file, check_readable

    check_output_dir("--out", args.out)
    check_number("--batch-size", args.batch_size, 1, 4096, integer=True)
    check_number("--mf-grid", args.mf_grid, 2, 1000, integer=True)
    check_number("--searaft-iters", args.searaft_iters, 1, 100, integer=True, optional=True)
    check_device("--device", args.device)
    for flag in ("aesthetic_head", "musiq_checkpoint", "cotracker_checkpoint"):
        if getattr(args, flag, None):
            check_readable("--" + flag.replace("_", "-"), getattr(args, flag), "file")
    if getattr(args, "cotracker_repo", None):
        check_readable("--cotracker-repo", args.cotracker_repo, "folder")
    for flag in ("subject_images", "reference_video", "prompts", "manifest"):
        if getattr(args, flag, None):
            check_readable("--" + flag.replace("_", "-"), getattr(args, flag), "path")
    from pathlib import Path

    from ..metrics.report import REPORT_FILES

    inputs = {"--" + f.replace("_", "-"): getattr(args, f, None) for f in ("videos", "manifest", "prompts",
                                                                           "reference_video")}
    for name in REPORT_FILES:  # the report never takes the place of a file it reads
        check_output_file("--out", Path(args.out) / name, inputs=inputs)


MODEL_FLAGS = ("clip_model", "dino_model", "subject_model", "pickscore_model", "pickscore_processor",
               "aesthetic_clip_model", "searaft_model")
# the model flags each of the runner's models (metrics.runner.MODEL_OF) reads: only the chosen metrics' models
# are looked up on the hub (a run with local models only makes no network request)
FLAGS_OF_MODEL = {"clip": ("clip_model",), "dino": ("dino_model",), "subject": ("subject_model",),
                  "pickscore": ("pickscore_model", "pickscore_processor"), "aesthetic": ("aesthetic_clip_model",),
                  "tracker": ("searaft_model",)}


def hub_models(args, metrics) -> list[str]:
    """The model names (flags' values) the chosen metrics load."""
    from ..metrics.runner import MODEL_OF

    flags = dict.fromkeys(f for m in metrics for f in FLAGS_OF_MODEL.get(MODEL_OF.get(m), ()))
    return [getattr(args, f, None) for f in flags]


def run(args, tracker=None) -> int:
    """Exit status: 0 when every metric ran (or was skipped because its model is unavailable), otherwise
    the number of metrics that failed on at least one video; their errors are in results.json and the report."""
    from ..metrics.report import write_report
    from ..metrics.runner import LABELS, Evaluator, check_inputs
    from .common import use_hub

    check_args(args)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if "motion_fidelity" in metrics and args.tracker == "searaft" and not args.searaft_model:
        from ..errors import SmraboothError
        raise SmraboothError("--tracker searaft needs --searaft-model (a SEA-RAFT checkpoint: hub id or folder)")
    items = items_from_args(args)
    check_inputs(items, metrics)
    settings = settings_from_args(args)
    use_hub(args, *hub_models(args, metrics))
    ev = Evaluator(settings, metrics, tracker=tracker, warn=lambda msg: print(f"warning: {msg}", flush=True))
    rows = ev.run(items)
    if len(ev.skipped) == len(metrics):
        from ..errors import SmraboothError
        raise SmraboothError("no metric could run: " + "; ".join(f"{k}: {v}" for k, v in ev.skipped.items()))
    header = settings.header()
    if "motion_fidelity" in metrics:
        header["tracker_used"] = ev.tracker_used
    res = write_report(args.out, header, rows, metrics, ev.skipped, ev.failed, videos=args.report_videos)
    print("settings: " + ", ".join(f"{k}={v}" for k, v in header.items() if v is not None))
    print(res["table"])
    for k, v in ev.skipped.items():
        print(f"skipped {LABELS[k]}: {v}")
    for k, errors in ev.failed.items():
        first = next(iter(errors.items()))
        print(f"failed {LABELS[k]} on {len(errors)} of {len(rows)} videos (first: {Path(first[0]).name}: {first[1]})")
    print(f"wrote {', '.join(str(p) for p in res['paths'].values())}")
    return len(ev.failed)
