"""The page's CJK font: Wan's negative prompt (the `official` recipe's) is Chinese, and a machine without a
CJK font would draw it as boxes. The app ships Noto Sans CJK SC cut down to the characters of the recipes'
negative prompts (scripts/make_ui_cjk_font.py; SIL Open Font License, assets/OFL.txt), embedded in the
page's CSS and used only for those characters."""

from __future__ import annotations

import base64
from pathlib import Path

FONT_FILE = Path(__file__).parent / "assets" / "noto-sans-cjk-sc-subset.woff2"
FONT_FAMILY = "SmraboothCJK"


def cjk_characters() -> set[str]:
    """Every character beyond ASCII in a recipe's negative prompt: what the font must hold."""
    from smrabooth.recipes import RECIPES

    text = "".join(r.sampler.negative_prompt or "" for r in RECIPES.values())
    return {c for c in text if ord(c) > 127}


def font_css() -> str:
    """An @font-face rule with the font inlined (no file to serve), limited to its characters."""
    if not FONT_FILE.is_file():
        return ""
    data = base64.b64encode(FONT_FILE.read_bytes()).decode()
    ranges = ",".join(f"U+{ord(c):04X}" for c in sorted(cjk_characters()))
    return (f"@font-face {{font-family: '{FONT_FAMILY}'; src: url(data:font/woff2;base64,{data}) format('woff2'); "
            f"unicode-range: {ranges}; font-display: block}}\n")
