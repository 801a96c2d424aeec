"""`smrabooth study build|tally`: the user-study web page and its results table."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("study", help="user study: build a static rating page, tally the answers")
    sub = p.add_subparsers(dest="study_command", metavar="{build,tally}")
    b = sub.add_parser("build", help="write a self-contained study page from a manifest")
    b.add_argument("--manifest", required=True, help="CSV: method,video,prompt,subject_images,reference_video")
    b.add_argument("--out", required=True, help="new folder for index.html, media/, key.json, answers/")
    b.add_argument("--seed", type=int, default=0, help="seed of the hidden candidate order")
    b.add_argument("--title", default="Video study")
    b.set_defaults(func=run_build)
    t = sub.add_parser("tally", help="the user-study table from answer files")
    t.add_argument("answers", nargs="+", help="answer JSON files (DIR/answers/*.json)")
    t.add_argument("--key", help="the study's key.json (default: found next to the answers)")
    t.add_argument("--json", dest="json_out", help="also write the table as JSON here")
    t.set_defaults(func=run_tally)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def run_build(args) -> int:
    from ..metrics.study import build_study
    from .evaluate import read_manifest

    out = build_study(read_manifest(args.manifest), args.out, seed=args.seed, title=args.title)
    print(f"wrote {out / 'index.html'}; serve it with: python -m http.server --bind 127.0.0.1 --directory {out} "
          f"8000, and collect the participants' files in {out / 'answers'}/ (the method key is {out / 'key.json'}: "
          "do not publish it with the page)")
    return 0


def run_tally(args) -> int:
    import json

    from ..metrics.report import format_table
    from ..metrics.study import QUESTIONS, tally

    summary, flat = tally(args.answers, args.key)
    labels = {k: v[0] for k, v in QUESTIONS.items()}
    participants = len({r["participant"] for r in flat})
    print(f"{len(args.answers)} answer files, {participants} participants, {len(flat)} ratings (mean ± 95% interval)")
    print(format_table(summary, list(QUESTIONS), labels))
    if args.json_out:
        from pathlib import Path
        Path(args.json_out).write_text(json.dumps(summary, indent=2))
    return 0
