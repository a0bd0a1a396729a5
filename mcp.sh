#!/usr/bin/env bash
# MultiCellPose set-up and entry point.
#   ./mcp.sh [FOLDER] [app options]   create the environment if needed, then start the app
#   ./mcp.sh test [pytest options]    create the environment if needed, then run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
VENV="${MCP_VENV:-.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
    echo "Setting up the environment in $VENV (first run only)..." >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e ".[dev,desktop]" >&2
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi
if [ "${1:-}" = "test" ]; then
    shift
    # One worker process per core, at most 4 (each imports torch and starts its own app servers); later -n wins.
    exec "$VENV/bin/python" -m pytest -n auto --maxprocesses 4 "$@"
fi
exec "$VENV/bin/multicellpose" "$@"
