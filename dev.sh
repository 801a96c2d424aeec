#!/bin/sh
# Set everything up and run the demo or the tests, from a clone on a machine with a shell and Python 3.10+:
#
#   ./dev.sh demo [smrabooth demo options]    # e.g. ./dev.sh demo --overwrite
#   ./dev.sh test [pytest options]            # e.g. ./dev.sh test -x tests/test_video.py
#   ./dev.sh lint [ruff options]              # ruff check src tests scripts benchmarks (pyproject.toml's rules)
#
# Creates .venv when it is missing; installs torch (the CPU wheel when there is no NVIDIA GPU, so pip does
# not pull a multi-GB CUDA build; the default build when nvidia-smi exists) and this project with its test
# extras, again only when pyproject.toml changed. PYTHON=/path/to/python3.x picks the interpreter.
set -eu

cd "$(dirname "$0")"
VENV=.venv
CPU_TORCH="torch==2.13.0"  # the CPU wheel on the default index, as CI installs it
STAMP="$VENV/.smrabooth-installed"

die() { echo "dev.sh: $*" >&2; exit 1; }

usage() {
    echo "usage: ./dev.sh demo [smrabooth demo options] | ./dev.sh test [pytest options] | ./dev.sh lint [ruff options]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
command_name=$1
shift
case "$command_name" in
    demo|test|lint) ;;
    -h|--help|help) usage ;;
    *) echo "dev.sh: unknown command '$command_name'" >&2; usage ;;
esac

make_venv() {
    python=${PYTHON:-python3}
    command -v "$python" >/dev/null 2>&1 || die "$python not found: install Python 3.10 or newer (or set PYTHON=/path/to/python3)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        die "$("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])') is too old: smrabooth needs Python 3.10 or newer (set PYTHON=/path/to/python3.10+)"
    echo "dev.sh: creating $VENV with $python"
    "$python" -m venv "$VENV" ||
        die "could not create $VENV with $python (on Debian/Ubuntu: apt-get install python3-venv), then remove $VENV and retry"
    "$VENV/bin/python" -m pip install -q --upgrade pip
}

install_torch() {
    if "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
        return
    fi
    if command -v nvidia-smi >/dev/null 2>&1; then
        echo "dev.sh: NVIDIA GPU found: installing the default torch build"
        "$VENV/bin/python" -m pip install -q torch
    else
        echo "dev.sh: no NVIDIA GPU (nvidia-smi not found): installing the CPU wheel $CPU_TORCH"
        "$VENV/bin/python" -m pip install -q "$CPU_TORCH"
    fi
}

install_project() {
    echo "dev.sh: installing smrabooth into $VENV (pip install -e \".[test]\")"
    "$VENV/bin/python" -m pip install -q -e ".[test]"
}

[ -x "$VENV/bin/python" ] || make_venv
want=$(cksum < pyproject.toml)
# the stamp is written after a successful install: it holds the pyproject.toml that was installed
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    install_torch
    install_project
    echo "$want" > "$STAMP"
fi

case "$command_name" in
    demo) exec "$VENV/bin/smrabooth" demo --out demo/ "$@" ;;
    test) exec "$VENV/bin/python" -m pytest -q "$@" ;;
    lint) exec "$VENV/bin/python" -m ruff check src tests scripts benchmarks "$@" ;;
esac
