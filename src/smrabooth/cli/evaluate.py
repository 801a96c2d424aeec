"""`smrabooth evaluate`: the paper's nine metrics over videos or a whole experiment (manifest)."""

from __future__ import annotations

from pathlib import Path

VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif"}


def register(subparsers) -> None:
    from ..metrics.runner import METRICS, EvalSettings
    from .common import add_config_arguments

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
    p.add_argument("--offline", action="store_true", help="never contact the hub (also: HF_HUB_OFFLINE=1)")
    p.add_argument("--report-videos", choices=["auto", "embed", "link", "none"], default="auto",
                   help="videos in report.html: embed (one portable file), link (paths relative to --out), none; "
                   "auto embeds them when together they take at most 64 MB, else links them")
    add_config_arguments(p, EvalSettings)  # the metrics' settings (the report's header): one flag per field
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
    """The metrics' settings of an evaluate call (its flags over EvalSettings' defaults; --offline: local files
    only), validated."""
    from ..metrics.runner import EvalSettings
    from .common import config_from_args

    return config_from_args(EvalSettings, args, base=EvalSettings(local_files_only=True if args.offline else None))


def check_args(args, settings) -> None:
    """What evaluate reads and writes, before any video is read or model loaded: --out, the device, the files the
    settings name and the inputs."""
    from ..validation import check_device, check_output_dir, check_output_file, check_readable

    check_output_dir("--out", args.out)
    check_device("--device", settings.device)
    for name in ("aesthetic_head", "musiq_checkpoint", "cotracker_checkpoint"):
        if getattr(settings, name):
            check_readable("--" + name.replace("_", "-"), getattr(settings, name), "file")
    if settings.cotracker_repo:
        check_readable("--cotracker-repo", settings.cotracker_repo, "folder")
    for flag in ("subject_images", "reference_video", "prompts", "manifest"):
        if getattr(args, flag, None):
            check_readable("--" + flag.replace("_", "-"), getattr(args, flag), "path")
    from pathlib import Path

    from ..metrics.report import REPORT_FILES

    inputs = {"--" + f.replace("_", "-"): getattr(args, f, None) for f in ("videos", "manifest", "prompts",
                                                                           "reference_video")}
    for name in REPORT_FILES:  # the report never takes the place of a file it reads
        check_output_file("--out", Path(args.out) / name, inputs=inputs)


# the settings each of the runner's models (metrics.runner.MODEL_OF) reads: only the chosen metrics' models
# are looked up on the hub (a run with local models only makes no network request)
FLAGS_OF_MODEL = {"clip": ("clip_model",), "dino": ("dino_model",), "subject": ("subject_model",),
                  "pickscore": ("pickscore_model", "pickscore_processor"), "aesthetic": ("aesthetic_clip_model",),
                  "tracker": ("searaft_model",)}


def hub_models(settings, metrics) -> list[str]:
    """The model names (settings' values) the chosen metrics load."""
    from ..metrics.runner import MODEL_OF

    names = dict.fromkeys(f for m in metrics for f in FLAGS_OF_MODEL.get(MODEL_OF.get(m), ()))
    return [getattr(settings, f, None) for f in names]


def run(args, tracker=None) -> int:
    """Exit status: 0 when every metric ran (or was skipped because its model is unavailable), otherwise
    the number of metrics that failed on at least one video; their errors are in results.json and the report."""
    from ..metrics.report import write_report
    from ..metrics.runner import LABELS, Evaluator, check_inputs
    from .common import use_hub

    settings = settings_from_args(args)
    check_args(args, settings)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if "motion_fidelity" in metrics and settings.tracker == "searaft" and not settings.searaft_model:
        from ..errors import SmraboothError
        raise SmraboothError("--tracker searaft needs --searaft-model (a SEA-RAFT checkpoint: hub id or folder)")
    items = items_from_args(args)
    check_inputs(items, metrics)
    use_hub(args, *hub_models(settings, metrics))
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
