"""Make the web app's CJK font: Noto Sans CJK SC cut down to the characters of the recipes' negative prompts.

Wan's negative prompt (the `official` recipe's) is Chinese; on a machine without a CJK font the browser
draws it as boxes. The app therefore ships this small subset (a few tens of KB, SIL Open Font License,
src/smrabooth_ui/assets/OFL.txt) and uses it only for the characters it has (CSS unicode-range).
Run again when a recipe's negative prompt changes (tests/test_ui.py fails until then):

    apt-get install -y fonts-noto-cjk        # the source font (Debian)
    pip install fonttools brotli             # any environment: the subsetter and WOFF2
    PYTHONPATH=src python scripts/make_ui_cjk_font.py [--font /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    from fontTools import subset
    from fontTools.ttLib import TTCollection

    from smrabooth_ui.fonts import FONT_FILE, cjk_characters

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--font", default="/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
    p.add_argument("--face", default="Noto Sans CJK SC", help="the face of the collection to cut (simplified Chinese)")
    args = p.parse_args()
    faces = [f for f in TTCollection(args.font).fonts if f["name"].getDebugName(4) == args.face]
    if not faces:
        print(f"error: {args.font} has no face {args.face!r}", file=sys.stderr)
        return 2
    font = faces[0]
    text = "".join(sorted(cjk_characters()))
    options = subset.Options()
    options.flavor = "woff2"
    options.layout_features = ["*"]
    options.name_IDs = ["*"]  # keep the copyright and licence records
    options.notdef_outline = True
    sub = subset.Subsetter(options)
    sub.populate(text=text)
    sub.subset(font)
    font.flavor = "woff2"
    font.save(FONT_FILE)
    print(f"wrote {FONT_FILE} ({FONT_FILE.stat().st_size} bytes, {len(text)} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
