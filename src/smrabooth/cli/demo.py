"""`smrabooth demo` and `smrabooth bench sprites`: the SMRA-Sprites demo and benchmark (docs/demo.md,
docs/bench-sprites.md). Both run on a model bundle (`--model DIR`, default: the one shipped with the package)."""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import shutil
import time
from pathlib import Path

from ..errors import SmraboothError

# Defaults that keep `smrabooth demo` under 10 minutes on 2 CPU cores with the "small" bundle
# (measured with a random-weight bundle; docs/demo.md).
DEMO_SUBJECT_STEPS = 200
DEMO_MOTION_STEPS = 16
DEMO_GEN_STEPS = 20
RUN_FILE = "run.json"  # written first into every out folder: marks it as holding a run


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="SMRA-Sprites demo: train subject+motion LoRAs on a held-out sprite and motion, generate, report",
        description="Trains a subject LoRA (SuRA) on stills of a held-out sprite and a motion LoRA (MoRA) on clips of a "
        "held-out motion, generates the combined prompt with sparse LoRA injection and without LoRAs (same seed), "
        "scores both against the ground truth and writes report.html.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(p)
    p.add_argument("--out", default="smrabooth-demo", help="output folder")
    p.add_argument("--subject-steps", type=int, default=DEMO_SUBJECT_STEPS, help="subject LoRA training steps")
    p.add_argument("--motion-steps", type=int, default=DEMO_MOTION_STEPS, help="motion LoRA training steps")
    p.add_argument("--seed", type=int, default=0, help="generation seed (the baseline uses the same)")
    p.add_argument("--subject", default="heart", help="held-out subject (heart, star, hexagon, crescent or 0..3)")
    p.add_argument("--motion", default="spiral", help="held-out motion family (figure-eight or spiral)")
    p.set_defaults(func=run_demo)

    b = subparsers.add_parser("bench", help="benchmarks (sprites: held-out subjects x motions x ablations)")
    sub = b.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    s = sub.add_parser(
        "sprites", help="SMRA-Sprites benchmark: cases x variants, scored against the ground truth",
        description="Runs every (held-out subject, held-out motion) case with every variant and seed, and prints "
        "the paper-style table (variant rows x metric columns, mean ± 95%% interval over cases and seeds).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(s)
    s.add_argument("--out", required=True, help="output folder (results.json, results.csv, table.md, cases/)")
    s.add_argument("--subjects", default=None,
                   help="N (the first N held-out subjects) or names/indices: heart,star (default: all 4)")
    s.add_argument("--motions", default=None, help="held-out families: figure-eight,spiral (default: both)")
    s.add_argument("--seeds", type=int, default=3, help="generation seeds per case and variant (0..N-1)")
    s.add_argument("--variants", default="full,no_sura,no_mora,base",
                   help="comma list of: full, no_sura, no_mora, dense, base, tpoint_{5,15,25,45}, "
                        "early_{0.1,0.5,0.8}, subject_all_layers, motion_all_layers")
    s.add_argument("--subject-steps", type=int, default=150, help="subject LoRA training steps")
    s.add_argument("--motion-steps", type=int, default=100, help="motion LoRA training steps")
    s.add_argument("--no-subject-stills", action="store_true",
                   help="skip the second table: one-frame stills of 'a picture of V* <shape>' with each subject "
                        "LoRA alone and without one (whether a LoRA learned the subject, apart from the video)")
    s.add_argument("--resume", action="store_true",
                   help="continue in --out instead of refusing it: reuse its trained LoRAs (e.g. to add variants) "
                        "and keep the videos and scores of an earlier call with the same settings")
    s.set_defaults(func=run_bench)


def _common(p) -> None:
    p.add_argument("--model", default=None, help="SMRA-Sprites bundle folder (default: the one shipped with smrabooth)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train and generate")
    p.add_argument("--gen-steps", type=int, default=DEMO_GEN_STEPS, help="denoising steps per video")
    p.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale")
    p.add_argument("--lr", type=float, default=5e-4, help="LoRA learning rate (both LoRAs)")
    p.add_argument("--no-motion-fidelity", action="store_true",
                   help="skip the SEA-RAFT-tracked motion fidelity (the slowest measure on a CPU)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out folder that holds a previous run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SmraboothError("--device cuda: no CUDA device is available here; use --device cpu")


def prepare_out(out, overwrite: bool, resume: bool = False) -> Path:
    """An empty (or new) folder; a folder with anything in it is refused unless --overwrite (emptied) or
    --resume (kept, for the bench's LoRA cache)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SmraboothError(f"--out {out} is a file: choose a folder")
    if out.exists() and any(out.iterdir()):
        if resume:
            return out
        ours = (out / RUN_FILE).is_file()
        if not overwrite:
            what = "a previous run" if ours else "files"
            raise SmraboothError(f"--out {out} already holds {what}; pass --overwrite to replace it "
                                 "or choose another folder")
        if not ours:  # --overwrite replaces a run, never a folder of someone else's files
            raise SmraboothError(f"--out {out} holds files that are not a smrabooth demo or bench run (no "
                                 f"{RUN_FILE}); refusing to delete them: choose another folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _settings(args, out: Path, subject_steps: int, motion_steps: int):
    from ..sprites.experiment import ExperimentSettings, resolve_bundle, settings_for_bundle

    model = resolve_bundle(args.model)
    check_device(args.device)
    if args.no_progress:  # also the libraries' "Loading weights" bars, which would fill a log
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    return settings_for_bundle(ExperimentSettings(
        model=str(model), out=str(out), subject_steps=subject_steps, motion_steps=motion_steps,
        gen_steps=args.gen_steps, guidance=args.guidance, lr=args.lr, device=args.device,
        progress=not args.no_progress, motion_fidelity=not args.no_motion_fidelity))


# ----------------------------------------------------------------------------------------------- demo
def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _png_uri(image) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return _data_uri(buf.getvalue(), "image/png")


METRIC_LABELS = {
    "dino_i": "DINO-I (subject, encoder)", "fg_color": "foreground colour (subject, pixels)",
    "traj": "trajectory similarity", "family_ok": "motion family correct", "motion_fidelity": "motion fidelity",
    "bg_ok": "background colour correct", "bg_dist": "background RGB distance ↓", "temporal": "temporal consistency",
}


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def write_demo_report(path: Path, case, settings, result: dict, baseline: dict, ref_images, ref_gif: Path,
                      result_gif: Path, baseline_gif: Path, timings: dict) -> Path:
    """report.html: reference images, reference motion, result and baseline side by side, metrics table.
    Images and GIFs are embedded (base64), so the page can be moved on its own."""
    from ..sprites.scoring import SCORE_COLUMNS

    e = html.escape
    gif = lambda p: _data_uri(Path(p).read_bytes(), "image/gif")
    rows = "".join(
        f"<tr><td class='l' title='{e(SCORE_COLUMNS[c])}'>{e(METRIC_LABELS.get(c, c))}</td>"
        f"<td>{_fmt(result.get(c))}</td><td>{_fmt(baseline.get(c))}</td></tr>" for c in SCORE_COLUMNS)
    rows += (f"<tr><td class='l'>detected motion family (taught: {e(case.family)})</td>"
             f"<td>{e(result.get('family_detected', '-'))}</td><td>{e(baseline.get('family_detected', '-'))}</td></tr>"
             f"<tr><td class='l'>detected background (asked: {e(case.background)})</td>"
             f"<td>{e(result.get('bg_detected', '-'))}</td><td>{e(baseline.get('bg_detected', '-'))}</td></tr>")
    refs = "".join(f"<img src='{_png_uri(im)}' alt='reference {i}'>" for i, im in enumerate(ref_images))
    design = case.design
    page = f"""<!doctype html><html><head><meta charset='utf-8'><title>smrabooth demo</title><style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222}} .row{{display:flex;flex-wrap:wrap;gap:18px}}
figure{{margin:0}} figcaption{{font-size:13px;color:#555}} img{{image-rendering:pixelated;width:192px;margin:2px}}
table{{border-collapse:collapse;margin:12px 0}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right;font-size:13px}}
th{{background:#f3f3f3}} td.l{{text-align:left}} pre{{background:#f7f7f7;padding:8px;font-size:12px}}</style></head><body>
<h1>smrabooth demo: SMRA-Sprites</h1>
<p>Prompt: <b>{e(case.prompt)}</b>. V* = the {e(design.words())}, {e(design.texture)} in
{e(design.texture_color)} (a held-out subject; the texture colour is never named in any caption),
S* = <b>{e(case.family)}</b> (a held-out motion).</p>
<div class='row'>
<figure><figcaption>subject references (SuRA LoRA trained on these)</figcaption><div>{refs}</div></figure>
<figure><figcaption>reference motion (MoRA LoRA trained on clips like this)</figcaption><img src='{gif(ref_gif)}' alt='reference motion'></figure>
<figure><figcaption>result: both LoRAs, sparse injection</figcaption><img src='{gif(result_gif)}' alt='result'></figure>
<figure><figcaption>baseline: no LoRA, same seed</figcaption><img src='{gif(baseline_gif)}' alt='baseline'></figure>
</div>
<h2>Metrics</h2>
<table id='metrics'><tr><th class='l'>metric</th><th>result</th><th>baseline</th></tr>{rows}</table>
<p>How each metric is computed: docs/bench-sprites.md.</p>
<h2>Settings</h2><pre>{e(json.dumps({"timings_s": timings, "settings": settings}, indent=1))}</pre>
</body></html>"""
    path.write_text(page)
    return path


def run_demo(args) -> int:
    from PIL import Image

    from ..sprites.experiment import (
        VARIANTS,
        Case,
        default_background,
        experiment_header,
        parse_motions,
        parse_subjects,
        run_case,
    )
    from ..sprites.scoring import load_reference
    from ..video import frame_strip, write_gif, write_video

    start = time.time()
    subjects = parse_subjects(f"{args.subject},")  # the trailing comma: "0" is subject 0, not "the first 0"
    if len(subjects) != 1:
        raise SmraboothError("--subject: name one held-out subject")
    family = parse_motions(args.motion)
    if len(family) != 1:
        raise SmraboothError("--motion: name one held-out motion family")
    from ..sprites.world import HELDOUT_SUBJECTS

    case = Case(subjects[0], family[0], default_background(HELDOUT_SUBJECTS[subjects[0]]))
    # resolve the bundle before touching --out, so a bad --model leaves nothing behind
    settings = _settings(args, Path(args.out) / "work", args.subject_steps, args.motion_steps)
    out = prepare_out(args.out, args.overwrite)
    (out / RUN_FILE).write_text(json.dumps({"command": "demo", "case": case.name}) + "\n")
    variants = [VARIANTS["full"], VARIANTS["base"]]
    res = run_case(settings, case, variants, [args.seed], keep_frames=True,
                   log=lambda m: print(m, flush=True))
    rows = {r["variant"]: r for r in res.rows}
    work = Path(settings.out) / "cases" / case.name
    shutil.copy(work / "loras" / "subject_sura" / "subject_lora.safetensors", out / "subject_lora.safetensors")
    shutil.copy(work / "loras" / "motion_mora" / "motion_lora.safetensors", out / "motion_lora.safetensors")
    for name, variant in (("result", "full"), ("baseline", "base")):
        frames = res.videos[(variant, args.seed)]
        write_video(frames, out / f"{name}.mp4", fps=settings.fps)
        write_gif(frames, out / f"{name}.gif", fps=settings.fps)
    ref = load_reference(work / "subject", work / "motion", case.background)
    write_gif(ref.motion_frames[0], out / "reference_motion.gif", fps=settings.fps)
    Image.fromarray(frame_strip([ref.motion_frames[0], res.videos[("full", args.seed)],
                                 res.videos[("base", args.seed)]])).save(out / "frames.png")
    timings = {"total": round(time.time() - start, 1)}
    for kind in ("subject_sura", "motion_mora"):
        t = work / "loras" / kind / "time.json"
        if t.is_file():
            timings[f"train_{kind}"] = round(json.loads(t.read_text())["seconds"], 1)
    timings.update({f"generate_{r['variant']}": r["gen_seconds"] for r in res.rows})
    header = experiment_header(settings, [case], variants, [args.seed])
    metrics = {"case": case.name, "prompt": case.prompt, "result": rows["full"], "baseline": rows["base"],
               "timings_s": timings, **header}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    write_demo_report(out / "report.html", case, header["settings"], rows["full"], rows["base"], ref.images,
                      out / "reference_motion.gif", out / "result.gif", out / "baseline.gif", timings)
    print(_demo_summary(rows["full"], rows["base"]))
    print(f"demo written to {out.resolve()} (open report.html) in {time.time() - start:.0f}s")
    return 0


def _demo_summary(result: dict, baseline: dict) -> str:
    from ..sprites.scoring import SCORE_COLUMNS

    lines = [f"{'metric':<22}{'result':>10}{'baseline':>10}"]
    for c in SCORE_COLUMNS:
        r, b = result.get(c), baseline.get(c)
        lines.append(f"{c:<22}{'-' if r is None else f'{r:.3f}':>10}{'-' if b is None else f'{b:.3f}':>10}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- bench
BENCH_COLUMNS = ["dino_i", "fg_color", "traj", "family_ok", "motion_fidelity", "bg_ok", "bg_dist", "temporal"]


def _digits(column: str) -> int:
    return 1 if column in ("motion_fidelity", "bg_dist") else 3


def finished_rows(out: Path, header: dict, rows: str = "rows", group: str = "variant", file: str = "video") -> dict:
    """{case: {(variant, seed): row}} of an earlier call into `out` (its results.json) with the same
    settings and whose video is still there: what `bench sprites --resume` keeps instead of generating
    again, so a long table can be finished over several calls. rows="still_rows", group="lora",
    file="image": the same for the subject stills."""
    path = out / "results.json"
    if not path.is_file():
        return {}
    previous = json.loads(path.read_text())
    if previous.get("settings") != header["settings"]:
        print(f"{path}: made with other settings; every {file} is generated again", flush=True)
        return {}
    done: dict = {}
    for row in previous.get(rows, []):
        if Path(row[file]).is_file():
            done.setdefault(row["case"], {})[(row[group], row["seed"])] = row
    return done


STILL_COLUMNS = ["dino_i", "fg_color"]


def write_bench_results(out: Path, header: dict, rows: list[dict], trained: dict,
                        still_rows: list[dict] | None = None) -> dict:
    import csv

    from ..metrics.report import format_table, summarize

    columns = [c for c in BENCH_COLUMNS if any(r.get(c) is not None for r in rows)]
    summary = summarize(rows, columns, group="variant")
    text = format_table(summary, columns, digits=_digits, first="variant")
    md = format_table(summary, columns, labels={c: c for c in columns}, digits=_digits, markdown=True, first="variant")
    stills = {}
    if still_rows:
        stills["still_summary"] = summarize(still_rows, STILL_COLUMNS, group="lora")
        stills["still_rows"] = still_rows
        text += "\n\nsubject LoRA alone, one-frame stills\n" + format_table(
            stills["still_summary"], STILL_COLUMNS, digits=_digits, first="subject LoRA")
        md += ("\n\nThe subject LoRA alone: one-frame stills of its own caption ('a picture of V* <shape>'), the "
               "LoRA on all its layers at scale 1, mean ± 95% interval over cases and seeds.\n\n" + format_table(
                   stills["still_summary"], STILL_COLUMNS, labels={c: c for c in STILL_COLUMNS}, digits=_digits,
                   markdown=True, first="subject LoRA"))
    (out / "results.json").write_text(json.dumps({**header, "trained": trained, "summary": summary, "rows": rows,
                                                  **stills}, indent=1) + "\n")
    keys = ["case", "subject", "family", "background", "variant", "seed", "t_point", *BENCH_COLUMNS,
            "family_detected", "bg_detected", "gen_seconds", "video"]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in rows:
            w.writerow(["" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in keys])
    s = header["settings"]
    note = (f"SMRA-Sprites, bundle `{Path(s['model']).name}` ({s['size']}px, {s['frames']} frames); "
            f"{len(header['cases'])} case(s) x {len(header['seeds'])} seed(s); subject {s['subject_steps']} steps, "
            f"motion {s['motion_steps']} steps, {s['gen_steps']} sampling steps, CFG {s['guidance']:g}. "
            "Mean ± 95% interval over cases and seeds; bg_dist lower is better.")
    (out / "table.md").write_text(note + "\n\n" + md + "\n")
    (out / "table.txt").write_text(text + "\n")
    return {"summary": summary, "table": text, "markdown": md}


def run_bench(args) -> int:
    if args.bench_command != "sprites":  # argparse already restricts it; kept for direct calls
        raise SmraboothError(f"unknown benchmark {args.bench_command!r}: choose sprites")
    from ..sprites.experiment import (
        experiment_header,
        make_cases,
        parse_motions,
        parse_subjects,
        parse_variants,
        run_case,
        run_subject_stills,
    )

    start = time.time()
    variants = parse_variants(args.variants)
    cases = make_cases(parse_subjects(args.subjects), parse_motions(args.motions))
    if args.seeds < 1:
        raise SmraboothError(f"--seeds must be at least 1, got {args.seeds}")
    seeds = list(range(args.seeds))
    settings = _settings(args, Path(args.out), args.subject_steps, args.motion_steps)
    out = prepare_out(args.out, args.overwrite, resume=args.resume)
    (out / RUN_FILE).write_text(json.dumps({"command": "bench sprites", "cases": [c.name for c in cases],
                                            "variants": [v.name for v in variants]}) + "\n")
    header = experiment_header(settings, cases, variants, seeds)
    rows, trained, still_rows = [], {}, []
    done = finished_rows(out, header) if args.resume else {}
    done_stills = finished_rows(out, header, "still_rows", "lora", "image") if args.resume else {}
    # the subject LoRAs the variants use, and none (the floor), each alone in a still
    still_kinds = [] if args.no_subject_stills else [*dict.fromkeys(v.subject for v in variants if v.subject), None]
    from ..sprites.bundle import load_bundle
    from ..sprites.scoring import SpriteScorer

    models = load_bundle(settings.model, device=settings.device)
    scorer = SpriteScorer(models.dinov2, models.searaft, device=settings.device,
                          with_motion_fidelity=settings.motion_fidelity)
    for i, case in enumerate(cases):
        print(f"case {i + 1}/{len(cases)}: {case.name} ('{case.prompt}')", flush=True)
        res = run_case(settings, case, variants, seeds, models=models, scorer=scorer,
                       log=lambda m: print(m, flush=True), done=done.get(case.name))
        rows += res.rows
        trained[case.name] = res.trained
        if still_kinds:
            still_rows += run_subject_stills(settings, case, still_kinds, seeds, models, scorer,
                                             log=lambda m: print(m, flush=True), done=done_stills.get(case.name))
        # after every case: a stopped run keeps its results
        table = write_bench_results(out, header, rows, trained, still_rows)
    print(table["table"])
    print(f"wrote results.json, results.csv and table.md to {out.resolve()} in {time.time() - start:.0f}s")
    return 0


__all__ = ["prepare_out", "register", "run_bench", "run_demo", "write_bench_results",
           "write_demo_report"]
