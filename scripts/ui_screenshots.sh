#!/bin/sh
# Make the web app's screenshots in docs/ui/ again: runs the browser test (tests/test_ui_browser.py), which
# walks through every page on the bundled SMRA-Sprites model and saves one screen of each (960 px wide, 256
# colours) when SMRABOOTH_UI_SCREENSHOTS is set. Needs Debian's chromium and the playwright package, as the
# test does. PYTHON picks the interpreter (default: .venv/bin/python when there is one, else python3).
#
#   scripts/ui_screenshots.sh            # about 3 minutes on 2 CPU cores
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
SMRABOOTH_UI_SCREENSHOTS="$PWD/docs/ui" PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" \
    "$python" -m pytest -q -p no:cacheprovider tests/test_ui_browser.py "$@"
ls -l docs/ui/
