"""`smrabooth study build|tally`: the user-study web page and its results table."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("study", help="user study: build a static rating page, tally the answers")
    sub = p.add_subparsers(dest="study_command", metavar="{build,tally}")
    b = sub.add_parser("build", help="write a self-contained study page from a manifest")
    b.add_argument("--manifest", required=True, help="CSV: method,video,prompt,subject_images,reference_video")
    b.add_argument("--out", required=True,
                   help="new folder for page/ (index.html, media/: the part to publish), key.json, answers/")
    b.add_argument("--seed", type=int, default=0, help="seed of the hidden candidate order (the study id is random)")
    b.add_argument("--title", default="Video study")
    b.set_defaults(func=run_build)
    t = sub.add_parser("tally", help="the user-study table from answer files")
    t.add_argument("answers", nargs="+", help="answer JSON files (DIR/answers/*.json)")
    t.add_argument("--key", help="the study's key.json (default: found next to the answers)")
    t.add_argument("--json", dest="json_out", help="also write the table as JSON here")
    t.set_defaults(func=run_tally)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def run_build(args) -> int:
    from ..metrics.study import PAGE_DIR, build_study
    from ..validation import check_number, check_output_dir, check_readable
    from .evaluate import read_manifest

    check_readable("--manifest", args.manifest, "file")
    check_output_dir("--out", args.out)
    check_number("--seed", args.seed, 0, 2**63 - 1, integer=True)

    out = build_study(read_manifest(args.manifest), args.out, seed=args.seed, title=args.title)
    page = out / PAGE_DIR
    print(f"wrote {page / 'index.html'}; publish only {page}/, e.g. python -m http.server --bind 127.0.0.1 "
          f"--directory {page} 8000. Collect the participants' files in {out / 'answers'}/; the method key "
          f"{out / 'key.json'} stays private (tally reads it)")
    return 0


def run_tally(args) -> int:
    import json
    from pathlib import Path

    from ..metrics.report import format_table
    from ..metrics.study import QUESTIONS, tally
    from ..validation import check_output_file, check_readable

    for path in args.answers:
        check_readable("ANSWERS", path, "file")
    if args.key:
        check_readable("--key", args.key, "file")
    if args.json_out:
        keys = [args.key] if args.key else [d / "key.json" for a in args.answers for d in (Path(a).parent,
                                                                                            Path(a).parent.parent)]
        check_output_file("--json", args.json_out, inputs={"ANSWERS": args.answers, "--key": keys})

    summary, flat = tally(args.answers, args.key)
    labels = {k: v[0] for k, v in QUESTIONS.items()}
    participants = len({r["participant"] for r in flat})
    print(f"{len(args.answers)} answer files, {participants} participants, {len(flat)} ratings; mean ± 95% "
          "interval over participants (each participant's mean rating counts once)")
    counts = {"participants": {m: max(s["n"] for s in qs.values()) for m, qs in summary.items()},
              "ratings": {m: sum(s["ratings"] for s in qs.values()) for m, qs in summary.items()}}
    print(format_table(summary, list(QUESTIONS), labels, extra=counts))
    if args.json_out:
        from ..metrics.report import write_text_atomic
        write_text_atomic(args.json_out, json.dumps(summary, indent=2))
    return 0
