"""A training's loss curves as an SVG drawn here, one line per term of its log.jsonl.

Gradio's LinePlot (Vega) fixes its colour domain when it first draws and afterwards only swaps the data: a
term that appears later (MoRA after a spatial phase, a resumed run's terms) gets a line without a stroke,
and a chart whose data changes at every refresh never received its colours. Drawn here, every refresh is a
whole picture: every term its colour, the same on every page, whatever arrived when.
"""

from __future__ import annotations

import html
import math

# one colour per loss term, the same on every page; a term not listed takes the next of PALETTE
TERM_COLOURS = {"flow": "#2563eb", "sura": "#ea580c", "mora": "#16a34a", "debiased": "#9333ea", "spatial": "#0891b2"}
PALETTE = ("#db2777", "#ca8a04", "#4b5563", "#0d9488")
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 96, 12, 34  # margins: y labels, legend, x labels


def term_colours(rows: list[dict]) -> dict[str, str]:
    """The colour of each loss term in `rows`, in order of appearance."""
    terms = list(dict.fromkeys(r["term"] for r in rows))
    extra = iter(PALETTE * len(terms))
    return {t: TERM_COLOURS.get(t) or next(extra) for t in terms}


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def loss_svg(rows: list[dict], label: str, elem_id: str) -> str:
    """rows {step, term, value} -> an SVG chart (a heading, axes, one polyline per term with data-term and
    its stroke, a legend); a note instead when there is nothing to draw yet."""
    head = f"<div class='smra-curves' id='{elem_id}'><div class='smra-curves-label'>{html.escape(label)}</div>"
    values = [r for r in rows if isinstance(r.get("value"), (int, float)) and math.isfinite(r["value"])]
    if not values:
        return head + "<p class='smra-empty'>The curves appear with the first logged step.</p></div>"
    steps = [r["step"] for r in values]
    ys = [r["value"] for r in values]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 0.05
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(step):
        return LEFT + (step - x0) / (x1 - x0) * pw

    def py(v):
        return TOP + (1 - (v - y0) / (y1 - y0)) * ph

    svg = (f"<svg viewBox='0 0 {WIDTH} {HEIGHT}' width='100%' role='img' aria-label='{html.escape(label)}' "
           "style='max-width:100%;font:11px sans-serif'>")
    parts = [svg, f"<rect x='{LEFT}' y='{TOP}' width='{pw}' height='{ph}' fill='none' stroke='#d4d4d8'/>"]
    for t in nice_ticks(y0, y1):
        y = py(t)
        parts.append(f"<line x1='{LEFT}' x2='{LEFT + pw}' y1='{y:.1f}' y2='{y:.1f}' stroke='#f0f0f2'/>"
                     f"<text x='{LEFT - 6}' y='{y + 4:.1f}' text-anchor='end' fill='#71717a'>{t:g}</text>")
    for t in nice_ticks(x0, x1):
        if float(t).is_integer():
            x = px(t)
            parts.append(f"<text x='{x:.1f}' y='{TOP + ph + 16}' text-anchor='middle' fill='#71717a'>{int(t)}</text>")
    parts.append(f"<text x='{LEFT + pw / 2:.0f}' y='{HEIGHT - 4}' text-anchor='middle' fill='#52525b'>step</text>"
                 f"<text x='12' y='{TOP + ph / 2:.0f}' text-anchor='middle' fill='#52525b' "
                 f"transform='rotate(-90 12 {TOP + ph / 2:.0f})'>loss</text>")
    colours = term_colours(values)
    for i, (term, colour) in enumerate(colours.items()):
        pts = sorted((r["step"], r["value"]) for r in values if r["term"] == term)
        points = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in pts)
        name = html.escape(term)
        parts.append(f"<polyline class='smra-line' data-term='{name}' data-points='{len(pts)}' points='{points}' "
                     f"fill='none' stroke='{colour}' stroke-width='1.5'><title>{name}</title></polyline>")
        ly = TOP + 10 + 16 * i
        parts.append(f"<line x1='{WIDTH - RIGHT + 10}' x2='{WIDTH - RIGHT + 26}' y1='{ly}' y2='{ly}' stroke='{colour}' "
                     f"stroke-width='2'/><text x='{WIDTH - RIGHT + 30}' y='{ly + 4}' fill='#3f3f46'>{name}</text>")
    parts.append("</svg></div>")
    return head + "".join(parts)
