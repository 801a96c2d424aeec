"""What the demo and the bench write: the demo's report.html and summary, the bench's results.json,
results.csv and table.md, and which rows of an earlier bench call `--resume` keeps (docs/demo.md,
docs/bench-sprites.md)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from smrabooth.errors import SmraboothError

RUN_FILE = "run.json"  # written first into every out folder: marks it as holding a run
# what the demo and the bench write into their --out: what --overwrite of a run that did not finish may replace
RUN_ENTRIES = {RUN_FILE, "work", "cases", "parts", "results.json", "results.csv", "table.md", "table.txt",
               "metrics.json", "report.html", "reference_motion.gif", "frames.png", "result.mp4", "result.gif",
               "baseline.mp4", "baseline.gif", "log.txt",
               *(f"{kind}_lora{expert}.safetensors" for kind in ("subject", "motion") for expert in ("", "_high", "_low"))}


def wrote(path: str) -> bool:
    """Whether a file of an --out folder (a path relative to it) is one the demo or the bench writes."""
    return path.split("/", 1)[0] in RUN_ENTRIES


def prepare_out(out, overwrite: bool, resume: bool = False, inputs: dict | None = None,
                command: str = "demo") -> Path:
    """An empty (or new) folder; a folder with anything in it is refused unless --overwrite (its run is set aside,
    kept until `finish_out` and put back by `restore_out`) or --resume of a run (kept, for the bench's LoRA cache).
    --overwrite replaces only a run of the demo or the bench that holds none of `inputs` (flag -> path) and no
    file the run did not write."""
    from smrabooth import run_folder

    out = Path(out)
    run_folder.recover(out)
    if out.exists() and not out.is_dir():
        raise SmraboothError(f"--out {out} is a file: choose a folder")
    if out.exists() and any(out.iterdir()):
        marker = run_folder.read_marker(out)
        ours = (out / RUN_FILE).is_file() or marker is not None
        if not ours:  # --overwrite and --resume are for a run, never a folder of someone else's files
            why = ("--resume continues only a run" if resume else "refusing to delete them" if overwrite
                   else "a run needs an empty or new folder")
            raise SmraboothError(f"--out {out} holds files that are not a smrabooth demo or bench run (no "
                                 f"{RUN_FILE}); {why}: choose another folder")
        if resume:
            run_folder.start_marker(out, command, owned=wrote)  # what else the folder holds is never the run's
            return out
        if not overwrite:
            raise SmraboothError(f"--out {out} already holds a previous run; pass --overwrite to replace it "
                                 "or choose another folder")
        run_folder.check_inputs_outside(out, inputs or {})
        if marker is not None:
            run_folder.check_replaceable(out, command, inputs or {}, owned=wrote, same=("demo", "bench sprites"))
        else:  # a run of a smrabooth older than the marker
            foreign = [f for f in run_folder.files_under(out) if not wrote(f)]
            if foreign:
                raise SmraboothError(f"--out {out} holds {foreign[0]}, which smrabooth {command} did not write; "
                                     f"--overwrite would delete it: move it out of {out}, or choose another --out")
        run_folder.set_aside(out)
    out.mkdir(parents=True, exist_ok=True)
    run_folder.start_marker(out, command, owned=wrote)
    return out


def finish_out(out: Path, command: str) -> None:
    """The run in `out` has finished: a run set aside by --overwrite is removed, the marker lists the files."""
    from smrabooth import run_folder

    run_folder.drop_aside(out)
    run_folder.finish_marker(out, command)


def restore_out(out: Path) -> None:
    """The run in `out` failed: a run set aside by --overwrite comes back in its place."""
    from smrabooth import run_folder

    run_folder.restore_aside(out)


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
    from .scoring import SCORE_COLUMNS

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
<figure><figcaption>reference motion (MoRA LoRA trained on clips like this)</figcaption>
<img src='{gif(ref_gif)}' alt='reference motion'></figure>
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


def demo_summary(result: dict, baseline: dict) -> str:
    from .scoring import SCORE_COLUMNS

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
    from smrabooth.readers import read_json

    path = out / "results.json"
    if not path.is_file():
        return {}
    try:
        previous = read_json(path, dict, "a bench's results.json")
        if previous.get("settings") != header["settings"]:
            print(f"{path}: made with other settings; every {file} is generated again", flush=True)
            return {}
        found = previous.get(rows, [])
        keys = ("case", group, file)
        if not isinstance(found, list) or not all(
                isinstance(r, dict) and all(isinstance(r.get(k), str) for k in keys)
                and isinstance(r.get("seed"), int) for r in found):
            raise SmraboothError(f"{path}: its {rows} are not the rows a bench writes")
    except SmraboothError as e:  # a record of the earlier call, not an input: it is made again
        print(f"{e}; every {file} is generated again", flush=True)
        return {}
    done: dict = {}
    for row in found:
        if Path(row[file]).is_file():
            done.setdefault(row["case"], {})[(row[group], row["seed"])] = row
    return done


STILL_COLUMNS = ["dino_i", "fg_color"]
LOWER_IS_BETTER = ("bg_dist",)


def paired_wins(rows: list[dict], columns: list[str], against: str = "base") -> dict:
    """{variant: {column: [wins, ties, losses]}}: each (case, seed) of a variant against the same case and seed
    of `against` (the no-LoRA floor by default), per column (bg_dist: lower wins). Variants without such pairs
    are left out."""
    floor = {(r["case"], r["seed"]): r for r in rows if r["variant"] == against}
    out: dict = {}
    for r in rows:
        other = floor.get((r["case"], r["seed"]))
        if r["variant"] == against or other is None:
            continue
        counts = out.setdefault(r["variant"], {c: [0, 0, 0] for c in columns})
        for c in columns:
            a, b = r.get(c), other.get(c)
            if a is None or b is None:
                continue
            sign = (a > b) - (a < b)
            counts[c][1 - (-sign if c in LOWER_IS_BETTER else sign)] += 1
    return out


def wins_table(wins: dict, columns: list[str], against: str = "base") -> str:
    """Markdown: per variant and column, 'wins / ties / losses' against `against` over its (case, seed) pairs."""
    head = f"| variant (against {against}: wins / ties / losses) | " + " | ".join(columns) + " |"
    lines = [head, "|---|" + "---:|" * len(columns)]
    for v, counts in wins.items():
        lines.append(f"| {v} | " + " | ".join("/".join(map(str, counts[c])) for c in columns) + " |")
    return "\n".join(lines)


def write_bench_results(out: Path, header: dict, rows: list[dict], trained: dict,
                        still_rows: list[dict] | None = None) -> dict:
    import csv

    from smrabooth.metrics.report import format_table, summarize

    columns = [c for c in BENCH_COLUMNS if any(r.get(c) is not None for r in rows)]
    summary = summarize(rows, columns, group="variant")
    text = format_table(summary, columns, digits=_digits, first="variant")
    md = format_table(summary, columns, labels={c: c for c in columns}, digits=_digits, markdown=True, first="variant")
    extra = {}
    wins = paired_wins(rows, columns)
    if wins:
        extra["wins"] = wins
        md += ("\n\nEach (case, seed) against the same case and seed without LoRAs (base): how many it beats, ties "
               "and loses on each measure (bg_dist: lower beats).\n\n" + wins_table(wins, columns))
    if still_rows:
        extra["still_summary"] = summarize(still_rows, STILL_COLUMNS, group="lora")
        extra["still_rows"] = still_rows
        text += "\n\nsubject LoRA alone, one-frame stills\n" + format_table(
            extra["still_summary"], STILL_COLUMNS, digits=_digits, first="subject LoRA")
        md += ("\n\nThe subject LoRA alone: one-frame stills of its own caption ('a picture of V* <shape>'), the "
               "LoRA on all its layers at scale 1, mean ± 95% interval over cases and seeds.\n\n" + format_table(
                   extra["still_summary"], STILL_COLUMNS, labels={c: c for c in STILL_COLUMNS}, digits=_digits,
                   markdown=True, first="subject LoRA"))
    (out / "results.json").write_text(json.dumps({**header, "trained": trained, "summary": summary, "rows": rows,
                                                  **extra}, indent=1) + "\n")
    keys = ["case", "subject", "family", "background", "variant", "seed", "t_point", *BENCH_COLUMNS,
            "family_detected", "bg_detected", "gen_seconds", "video"]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in rows:
            w.writerow(["" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in keys])
    s = header["settings"]
    note = (f"SMRA-Sprites, bundle `{Path(s['model']).name}` ({s['size']}px, {s['frames']} frames); "
            f"{len(header['cases'])} case(s) x {len(header['seeds'])} seed(s); recipe `{s.get('recipe', 'paper')}`; "
            f"subject {s['subject_steps']} steps, "
            f"motion {s['motion_steps']} steps, {s['gen_steps']} sampling steps, CFG {s['guidance']:g}. "
            "Mean ± 95% interval over cases and seeds; bg_dist lower is better.")
    (out / "table.md").write_text(note + "\n\n" + md + "\n")
    (out / "table.txt").write_text(text + "\n")
    return {"summary": summary, "table": text, "markdown": md}
