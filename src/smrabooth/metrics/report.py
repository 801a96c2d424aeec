"""Tables and reports: the paper's Table 1 (methods x metrics, mean and 95% interval over videos) as text,
JSON, CSV and a self-contained HTML page (no scripts, no external files)."""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path

from .runner import LABELS


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


def _fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"


def digits_for(column: str) -> int:
    # the paper prints cosines with 3 decimals and x100 scores with 2
    return 3 if column in ("clip_t", "clip_i", "dino_i", "temporal_consistency") else 2


def format_table(summary: dict, columns: list[str], labels: dict | None = None, digits=None,
                 markdown: bool = False, first: str = "method") -> str:
    """Group rows x metric columns, each cell 'mean ± half-width of the 95% interval': aligned text, or a
    Markdown table with an n column (values per group). digits: column -> decimals (default digits_for)."""
    labels, digits = labels or LABELS, digits or digits_for
    head = [first] + (["n"] if markdown else []) + [labels.get(c, c) for c in columns]
    body = []
    for g, stats in summary.items():
        cells = [g] + ([str(max(s["n"] for s in stats.values()))] if markdown else [])
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


def write_json(path, header: dict, summary: dict, rows: list[dict], skipped: dict) -> Path:
    rows = [{k: v for k, v in r.items() if k != "thumbnail"} for r in rows]
    Path(path).write_text(json.dumps({"settings": header, "skipped": skipped, "summary": summary, "videos": rows},
                                     indent=2))
    return Path(path)


def write_csv(folder, summary: dict, rows: list[dict], columns: list[str]) -> tuple[Path, Path]:
    folder = Path(folder)
    per_video = folder / "per_video.csv"
    with open(per_video, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "video", "prompt", "frames"] + columns)
        for r in rows:
            w.writerow([r["method"], r["video"], r.get("prompt", ""), r.get("frames", "")] +
                       ["" if r.get(c) is None else f"{r[c]:.6g}" for c in columns])
    table = folder / "table.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "n"] + [x for c in columns for x in (c, f"{c}_ci_low", f"{c}_ci_high")])
        for g, stats in summary.items():
            n = max(s["n"] for s in stats.values()) if stats else 0
            w.writerow([g, n] + ["" if stats[c][k] is None else f"{stats[c][k]:.6g}"
                                 for c in columns for k in ("mean", "low", "high")])
    return per_video, table


def bar_chart_svg(title: str, stats: dict, column: str, width: int = 320, bar_h: int = 22) -> str:
    """Horizontal bars (one per group) with the 95% interval as a whisker."""
    items = [(g, s[column]) for g, s in stats.items() if s[column]["mean"] is not None]
    if not items:
        return ""
    lo = min(0.0, min(s["low"] for _, s in items))
    hi = max(max(s["high"] for _, s in items), 1e-9)
    span = (hi - lo) or 1.0
    left, plot = 110, width - 170
    x = lambda v: left + (v - lo) / span * plot
    h = 24 + bar_h * len(items) + 6
    out = [f'<svg class="chart" width="{width}" height="{h}" role="img" aria-label="{html.escape(title)}">',
           f'<text x="4" y="15" class="ct">{html.escape(title)}</text>']
    for i, (g, s) in enumerate(items):
        y = 24 + i * bar_h
        x0, x1 = x(min(0.0, s["mean"])), x(max(0.0, s["mean"]))
        out.append(f'<text x="4" y="{y + 15}" class="cl">{html.escape(g[:16])}</text>')
        out.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 1):.1f}" height="{bar_h - 8}" '
                   f'fill="hsl({(i * 67) % 360},55%,55%)"><title>{html.escape(g)}: {s["mean"]:.4g}</title></rect>')
        out.append(f'<line x1="{x(s["low"]):.1f}" x2="{x(s["high"]):.1f}" y1="{y + bar_h / 2 - 1}" '
                   f'y2="{y + bar_h / 2 - 1}" stroke="#222"/>')
        out.append(f'<text x="{left + plot + 6}" y="{y + 15}" class="cl">{_fmt(s["mean"], digits_for(column))}</text>')
    out.append("</svg>")
    return "".join(out)


CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:12px 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;font-size:13px}th{background:#f3f3f3}
td.l,th.l{text-align:left}.chart{margin:6px 12px 6px 0;border:1px solid #eee}.ct{font-weight:600;font-size:13px}
.cl{font-size:12px}.charts{display:flex;flex-wrap:wrap}pre{background:#f7f7f7;padding:8px;font-size:12px}
img.strip{height:48px}"""


def write_html(path, header: dict, summary: dict, rows: list[dict], columns: list[str], skipped: dict,
               labels: dict | None = None, title: str = "smrabooth evaluation") -> Path:
    labels = labels or LABELS
    e = html.escape
    parts = [(f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{CSS}</style>"
              f"</head><body><h1>{e(title)}</h1>")]
    parts.append("<h2>Settings</h2><pre>" + e(json.dumps(header, indent=1)) + "</pre>")
    if skipped:
        parts.append("<h2>Skipped metrics</h2><ul>" + "".join(f"<li><b>{e(labels.get(k, k))}</b>: {e(v)}</li>"
                                                             for k, v in skipped.items()) + "</ul>")
    parts.append("<h2>Table (mean ± 95% interval over videos)</h2><table id='summary'><tr><th class='l'>method</th>"
                 "<th>n</th>" + "".join(f"<th>{e(labels.get(c, c))}</th>" for c in columns) + "</tr>")
    for g, stats in summary.items():
        n = max(s["n"] for s in stats.values()) if stats else 0
        cells = "".join(f"<td>{_fmt(stats[c]['mean'], digits_for(c))} ± {_fmt(stats[c]['half_width'], digits_for(c))}"
                        "</td>" if stats[c]["mean"] is not None else "<td>-</td>" for c in columns)
        parts.append(f"<tr><td class='l'>{e(g)}</td><td>{n}</td>{cells}</tr>")
    parts.append("</table><h2>Per metric</h2><div class='charts'>")
    parts += [bar_chart_svg(labels.get(c, c), summary, c) for c in columns]
    parts.append("</div>")
    if rows and "video" in rows[0]:
        parts.append("<h2>Videos</h2><table id='videos'><tr><th class='l'>method</th><th class='l'>video</th>"
                     "<th class='l'>frames</th>" + "".join(f"<th>{e(labels.get(c, c))}</th>" for c in columns) + "</tr>")
        for r in rows:
            thumb = f"<br><img class='strip' src='{r['thumbnail']}' alt='frames'>" if r.get("thumbnail") else ""
            cells = "".join(f"<td>{_fmt(r.get(c), digits_for(c) + 1)}</td>" for c in columns)
            parts.append(f"<tr><td class='l'>{e(r['method'])}</td><td class='l'>{e(Path(r['video']).name)}"
                         f"<br><small>{e(r.get('prompt', ''))}</small>{thumb}</td><td>{r.get('frames', '')}</td>{cells}</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts))
    return Path(path)


def write_report(out_dir, header: dict, rows: list[dict], columns: list[str], skipped: dict) -> dict:
    """Everything into out_dir; returns the summary and the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    active = [c for c in columns if c not in skipped]
    summary = summarize(rows, active)
    table = format_table(summary, active)
    (out / "table.txt").write_text(table + "\n")
    paths = {"json": write_json(out / "results.json", header, summary, rows, skipped)}
    paths["per_video_csv"], paths["table_csv"] = write_csv(out, summary, rows, active)
    paths["html"] = write_html(out / "report.html", header, summary, rows, active, skipped)
    return {"summary": summary, "table": table, "paths": paths}
