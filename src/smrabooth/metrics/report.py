"""Tables and reports: the paper's Table 1 (methods x metrics, mean and 95% interval over videos) as text,
JSON, CSV and a self-contained HTML page (a sortable table, dot plots with intervals, the videos)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from pathlib import Path

from .runner import LABELS

# videos in the report: "auto" embeds them while together they stay under this size, else links them
EMBED_LIMIT_BYTES = 64 * 2**20
VIDEO_MIME = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/mp4"}


def write_text_atomic(path, text: str) -> Path:
    """Write through a temporary file and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # an output in a folder that does not exist yet
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def mean_ci(values, level: float = 0.95) -> dict:
    """Mean and the two-sided Student-t interval of the mean (half-width 0 for a single value)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "half_width": None, "n": 0}
    mean = sum(vals) / n
    if n < 2:
        return {"mean": mean, "low": mean, "high": mean, "half_width": 0.0, "n": 1}
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    hw = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - hw, "high": mean + hw, "half_width": hw, "n": n}


def summarize(rows: list[dict], columns: list[str], group: str = "method") -> dict:
    """{group value: {column: mean_ci}} in first-seen order of the groups."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[group], []).append(r)
    return {g: {c: mean_ci([r.get(c) for r in rs]) for c in columns} for g, rs in groups.items()}


def trackers_by_group(rows: list[dict], group: str = "method") -> dict:
    """{group: the tracker(s) behind its Motion Fidelity values}, for groups that have any."""
    out: dict[str, list[str]] = {}
    for r in rows:
        if r.get("tracker"):
            names = out.setdefault(r[group], [])
            if r["tracker"] not in names:
                names.append(r["tracker"])
    return {g: ", ".join(v) for g, v in out.items()}


def _fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"


def digits_for(column: str) -> int:
    # the paper prints cosines with 3 decimals and x100 scores with 2
    return 3 if column in ("clip_t", "clip_i", "dino_i", "temporal_consistency") else 2


def format_table(summary: dict, columns: list[str], labels: dict | None = None, digits=None,
                 markdown: bool = False, first: str = "method", extra: dict | None = None) -> str:
    """Group rows x metric columns, each cell 'mean ± half-width of the 95% interval': aligned text, or a
    Markdown table with an n column (values per group). digits: column -> decimals (default digits_for).
    extra: {column name: {group: text}}, columns shown after the group (the tracker, participant counts)."""
    labels, digits, extra = labels or LABELS, digits or digits_for, extra or {}
    head = [first] + (["n"] if markdown else []) + list(extra) + [labels.get(c, c) for c in columns]
    body = []
    for g, stats in summary.items():
        cells = [g] + ([str(max(s["n"] for s in stats.values()))] if markdown else [])
        cells += [str(extra[k].get(g, "-")) for k in extra]
        for c in columns:
            s, d = stats[c], digits(c)
            cells.append("-" if s["mean"] is None else f"{_fmt(s['mean'], d)} ± {_fmt(s['half_width'], d)}")
        body.append(cells)
    if markdown:
        rule = ["---"] + ["---:"] * (len(head) - 1)
        return "\n".join("| " + " | ".join(r) + " |" for r in [head, rule, *body])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths))
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in body])


def write_json(path, header: dict, summary: dict, rows: list[dict], skipped: dict, failed: dict | None = None,
               trackers: dict | None = None) -> Path:
    rows = [{k: v for k, v in r.items() if k != "thumbnail"} for r in rows]
    return write_text_atomic(path, json.dumps({"settings": header, "skipped": skipped, "failed": failed or {},
                                               "trackers": trackers or {}, "summary": summary, "videos": rows},
                                              indent=2))


def _csv_text(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def write_csv(folder, summary: dict, rows: list[dict], columns: list[str],
              trackers: dict | None = None) -> tuple[Path, Path]:
    """per_video.csv and table.csv; both carry a tracker column when Motion Fidelity is among the columns."""
    folder = Path(folder)
    with_tracker = "motion_fidelity" in columns
    head = ["method", "video", "prompt", "frames"] + (["tracker"] if with_tracker else []) + columns
    lines = [head] + [[r["method"], r["video"], r.get("prompt", ""), r.get("frames", "")] +
                      ([r.get("tracker") or ""] if with_tracker else []) +
                      ["" if r.get(c) is None else f"{r[c]:.6g}" for c in columns] for r in rows]
    per_video = write_text_atomic(folder / "per_video.csv", _csv_text(lines))
    head = ["method", "n"] + (["tracker"] if with_tracker else []) + [
        x for c in columns for x in (c, f"{c}_ci_low", f"{c}_ci_high")]
    lines = [head]
    for g, stats in summary.items():
        n = max(s["n"] for s in stats.values()) if stats else 0
        lines.append([g, n] + ([(trackers or {}).get(g, "")] if with_tracker else []) +
                     ["" if stats[c][k] is None else f"{stats[c][k]:.6g}" for c in columns for k in ("mean", "low", "high")])
    table = write_text_atomic(folder / "table.csv", _csv_text(lines))
    return per_video, table


def _nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2 or 5 x a power of ten)."""
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def dot_plot_svg(title: str, stats: dict, column: str, note: str = "", width: int = 420, row_h: int = 22) -> str:
    """One dot per group at its mean with the 95% interval as a whisker, on an axis fitted to the data (not
    to 0), so 0.98 and 0.99 are told apart; full group names, ticks and values written out."""
    items = [(g, s[column]) for g, s in stats.items() if s[column]["mean"] is not None]
    if not items:
        return ""
    lo, hi = min(s["low"] for _, s in items), max(s["high"] for _, s in items)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.01, 1e-3)
    lo, hi = lo - pad, hi + pad
    ticks = [t for t in _nice_ticks(lo, hi) if lo <= t <= hi]
    left = 12 + 7 * max(len(g) for g, _ in items)  # room for the whole group name (about 7 px a character)
    value_w, plot = 70, width - 12 - 70
    width = left + plot + value_w
    x = lambda v: left + (v - lo) / (hi - lo) * plot
    top = 40 if note else 26
    h = top + row_h * len(items) + 22
    e = html.escape
    out = [f'<svg class="chart" width="{width}" height="{h}" role="img" aria-label="{e(title)}">',
           f'<text x="4" y="15" class="ct">{e(title)}</text>']
    if note:
        out.append(f'<text x="4" y="31" class="cn">{e(note)}</text>')
    axis_y = top + row_h * len(items) + 2
    out.append(f'<line x1="{left}" x2="{left + plot}" y1="{axis_y}" y2="{axis_y}" stroke="#888"/>')
    d = digits_for(column)
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 2}" y2="{axis_y + 3}" stroke="#eee"/>'
                   f'<text x="{x(t):.1f}" y="{axis_y + 15}" class="tk" text-anchor="middle">{t:.{d}f}</text>')
    for i, (g, s) in enumerate(items):
        y = top + i * row_h + row_h / 2
        color = f"hsl({(i * 67) % 360},55%,45%)"
        out.append(f'<text x="4" y="{y + 4}" class="cl">{e(g)}</text>')
        out.append(f'<line x1="{x(s["low"]):.1f}" x2="{x(s["high"]):.1f}" y1="{y}" y2="{y}" stroke="{color}" '
                   'stroke-width="2"/>')
        out.append(f'<circle cx="{x(s["mean"]):.1f}" cy="{y}" r="4.5" fill="{color}"><title>{e(g)}: '
                   f'{s["mean"]:.4g} (95% interval {s["low"]:.4g} to {s["high"]:.4g}, n={s["n"]})</title></circle>')
        out.append(f'<text x="{left + plot + 6}" y="{y + 4}" class="cl">{_fmt(s["mean"], d)}</text>')
    out.append("</svg>")
    return "".join(out)


def video_sources(rows: list[dict], mode: str, out_dir) -> dict:
    """{video path: src for a <video>/<img> element} per `mode` (auto | embed | link | none)."""
    paths = list(dict.fromkeys(r["video"] for r in rows if r.get("video")))
    if mode == "none":
        return {}
    if mode == "auto":
        total = sum(Path(p).stat().st_size for p in paths if Path(p).is_file())
        mode = "embed" if total <= EMBED_LIMIT_BYTES else "link"
    out = {}
    for p in paths:
        path = Path(p)
        if not path.is_file():
            continue
        if mode == "embed":
            mime = VIDEO_MIME.get(path.suffix.lower(), "image/gif" if path.suffix.lower() == ".gif" else None)
            if mime:
                out[p] = f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()
                continue
        out[p] = Path(os.path.relpath(path.resolve(), Path(out_dir).resolve())).as_posix()
    return out


CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:12px 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;font-size:13px;vertical-align:top}th{background:#f3f3f3}
td.l,th.l{text-align:left}th.sortable{cursor:pointer;user-select:none}th.sortable:after{content:" \\2195";color:#999}
th[aria-sort=ascending]:after{content:" \\2191";color:#222}th[aria-sort=descending]:after{content:" \\2193";color:#222}
.chart{margin:6px 12px 6px 0;border:1px solid #eee}.ct{font-weight:600;font-size:13px}.cn{font-size:11px;fill:#666}
.cl{font-size:12px}.tk{font-size:10px;fill:#666}.charts{display:flex;flex-wrap:wrap}
pre{background:#f7f7f7;padding:8px;font-size:12px}small{color:#666}.skip{color:#a60}.fail{color:#b00}
video.clip,img.clip{height:120px;display:block;margin-top:4px;max-width:480px}"""

# Clicking a header sorts the table by that column (numbers by the value in data-v, text otherwise).
SORT_JS = """document.querySelectorAll('table.sortable').forEach(t => {
  t.querySelectorAll('th.sortable').forEach((th, col) => th.addEventListener('click', () => {
    const dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    t.querySelectorAll('th').forEach(h => h.removeAttribute('aria-sort'));
    th.setAttribute('aria-sort', dir);
    const key = r => { const c = r.children[col]; const v = c.dataset.v;
                       return v === undefined || v === '' ? c.textContent.trim() : Number(v); };
    const body = t.tBodies[0], rows = Array.from(body.rows);
    rows.sort((a, b) => { const x = key(a), y = key(b);
      const blank = (typeof x === 'number') !== (typeof y === 'number');
      if (blank) return typeof x === 'number' ? -1 : 1;  /* rows without a value go last */
      const c = typeof x === 'number' ? x - y : String(x).localeCompare(String(y));
      return dir === 'ascending' ? c : -c; });
    rows.forEach(r => body.append(r));
  }));
});"""


def _metric_note(c: str, skipped: dict, failed: dict, header: dict) -> str:
    """What shaped a metric's numbers, shown beside them: its tracker, or that it was skipped or failed."""
    notes = []
    if c == "motion_fidelity" and header.get("tracker_used"):
        notes.append(f"tracker: {header['tracker_used']}")
    if c in skipped:
        notes.append("skipped")
    if c in failed:
        notes.append(f"failed on {len(failed[c])} video(s)")
    return "; ".join(notes)


def write_html(path, header: dict, summary: dict, rows: list[dict], columns: list[str], skipped: dict,
               labels: dict | None = None, title: str = "smrabooth evaluation", failed: dict | None = None,
               trackers: dict | None = None, sources: dict | None = None) -> Path:
    """columns: every metric asked for; skipped ones show why in their cells and in a list, failed ones how
    often and why; Motion Fidelity shows its tracker in its header, and a tracker column when it ran."""
    labels, failed, trackers, sources = labels or LABELS, failed or {}, trackers or {}, sources or {}
    e = html.escape
    parts = [(f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{CSS}</style>"
              f"</head><body><h1>{e(title)}</h1>")]
    if skipped or failed:
        items = [f"<li class='skip'><b>{e(labels.get(k, k))}</b> skipped: {e(v)}</li>" for k, v in skipped.items()]
        for k, errs in failed.items():
            sub = "".join(f"<li>{e(Path(v).name)}: {e(msg)}</li>" for v, msg in errs.items())
            items.append(f"<li class='fail'><b>{e(labels.get(k, k))}</b> failed on {len(errs)} video(s):<ul>{sub}</ul></li>")
        parts.append("<h2>Skipped and failed metrics</h2><ul id='problems'>" + "".join(items) + "</ul>")
    with_tracker = "motion_fidelity" in columns and "motion_fidelity" not in skipped
    head = "".join(f"<th class='sortable'>{e(labels.get(c, c))}" +
                   (f"<br><small>{e(n)}</small>" if (n := _metric_note(c, skipped, failed, header)) else "") + "</th>"
                   for c in columns)
    parts.append("<h2>Table: mean ± 95% interval over videos (click a header to sort)</h2>"
                 "<table id='summary' class='sortable'><thead><tr><th class='l sortable'>method</th>"
                 "<th class='sortable'>n</th>" + ("<th class='l sortable'>tracker</th>" if with_tracker else "") +
                 head + "</tr></thead><tbody>")
    for g, stats in summary.items():
        n = max((s["n"] for s in stats.values()), default=0)
        cells = []
        for c in columns:
            if c in skipped:
                cells.append(f"<td class='skip' title='{e(skipped[c])}'>skipped</td>")
            elif stats[c]["mean"] is None:
                cells.append("<td class='fail'>failed</td>" if c in failed else "<td>-</td>")
            else:
                d, s = digits_for(c), stats[c]
                more = f"<br><small>n={s['n']}</small>" if s["n"] != n else ""
                cells.append(f"<td data-v='{s['mean']!r}'>{_fmt(s['mean'], d)} ± {_fmt(s['half_width'], d)}{more}</td>")
        tracker = f"<td class='l'>{e(trackers.get(g, '-'))}</td>" if with_tracker else ""
        parts.append(f"<tr><td class='l'>{e(g)}</td><td data-v='{n}'>{n}</td>{tracker}{''.join(cells)}</tr>")
    parts.append("</tbody></table><h2>Per metric (dot: mean; line: 95% interval; axis fitted to the values)</h2>"
                 "<div class='charts'>")
    parts += [dot_plot_svg(labels.get(c, c), summary, c, _metric_note(c, {}, failed, header))
              for c in columns if c not in skipped]
    parts.append("</div>")
    if rows and "video" in rows[0]:
        parts.append("<h2>Videos</h2><table id='videos' class='sortable'><thead><tr><th class='l sortable'>method"
                     "</th><th class='l sortable'>video</th><th class='sortable'>frames</th>" +
                     "".join(f"<th class='sortable'>{e(labels.get(c, c))}</th>" for c in columns) + "</tr></thead><tbody>")
        for r in rows:
            parts.append(f"<tr><td class='l'>{e(r['method'])}</td><td class='l'>{e(Path(r['video']).name)}"
                         f"<br><small>{e(r.get('prompt', ''))}</small>{_clip(r, sources)}</td>"
                         f"<td data-v='{r.get('frames', '')}'>{r.get('frames', '')}</td>" +
                         "".join(_video_cell(r, c, skipped, failed) for c in columns) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("<h2>Settings</h2><pre>" + e(json.dumps(header, indent=1)) + "</pre>")
    parts.append(f"<script>{SORT_JS}</script></body></html>")
    return write_text_atomic(path, "\n".join(parts))


def _clip(r: dict, sources: dict) -> str:
    """The row's video, playable (the frame strip as its poster), or the strip alone."""
    e, src, poster = html.escape, sources.get(r["video"]), r.get("thumbnail")
    if src is None:
        return f"<img class='clip' src='{poster}' alt='frames'>" if poster else ""
    if src.startswith("data:image/gif") or src.lower().endswith(".gif"):
        return f"<img class='clip' src='{e(src)}' alt='video'>"
    poster_attr = f" poster='{poster}'" if poster else ""
    return (f"<video class='clip' controls loop muted playsinline preload='metadata'{poster_attr} src='{e(src)}'>"
            "</video>")


def _video_cell(r: dict, c: str, skipped: dict, failed: dict) -> str:
    if c in skipped:
        return "<td class='skip'>skipped</td>"
    if r.get(c) is None and r["video"] in failed.get(c, {}):
        return f"<td class='fail' title='{html.escape(failed[c][r['video']])}'>failed</td>"
    note = f"<br><small>{html.escape(r['tracker'])}</small>" if c == "motion_fidelity" and r.get("tracker") else ""
    return f"<td data-v='{'' if r.get(c) is None else repr(r[c])}'>{_fmt(r.get(c), digits_for(c) + 1)}{note}</td>"


REPORT_FILES = ("table.txt", "results.json", "per_video.csv", "table.csv", "report.html")  # what write_report writes


def write_report(out_dir, header: dict, rows: list[dict], columns: list[str], skipped: dict,
                 failed: dict | None = None, videos: str = "auto") -> dict:
    """Everything into out_dir; returns the summary, the text table and the paths written. Skipped metrics
    (no model) and failed ones (errors per video) are recorded; the others' numbers are written regardless."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    failed = failed or {}
    active = [c for c in columns if c not in skipped]
    summary = summarize(rows, active)
    trackers = trackers_by_group(rows)
    extra = {"tracker": trackers} if "motion_fidelity" in active else None
    table = format_table(summary, active, extra=extra)
    write_text_atomic(out / "table.txt", table + "\n")
    paths = {"table": out / "table.txt",
             "json": write_json(out / "results.json", header, summary, rows, skipped, failed, trackers)}
    paths["per_video_csv"], paths["table_csv"] = write_csv(out, summary, rows, active, trackers)
    paths["html"] = write_html(out / "report.html", header, summary, rows, columns, skipped, failed=failed,
                               trackers=trackers, sources=video_sources(rows, videos, out))
    return {"summary": summary, "table": table, "paths": paths}
