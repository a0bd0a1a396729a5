#!/usr/bin/env bash
# Documented check that `multicellpose --native` opens a real desktop window (pywebview, Qt backend)
# on a virtual screen, and saves a screenshot of it.
#   Needs: Debian xvfb and Qt's X11 libraries (as root:
#   apt-get install xvfb libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0
#   libxcb-render-util0 libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libnss3 libxcomposite1 libxdamage1
#   libxtst6 libegl1 libgl1 libxkbfile1 libasound2), and the `desktop` extra (pywebview[qt]).
# Usage: scripts/native_check.sh [FOLDER] [SCREENSHOT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
FOLDER="${1:-}"
SHOT="${2:-native_window.png}"
DISPLAY_NO=":$((RANDOM % 400 + 100))"
Xvfb "$DISPLAY_NO" -screen 0 1400x900x24 >/dev/null 2>&1 &
XVFB=$!
trap 'kill -- -$APP 2>/dev/null; kill $XVFB 2>/dev/null || true' EXIT
sleep 1
export DISPLAY="$DISPLAY_NO" PYWEBVIEW_GUI=qt QTWEBENGINE_DISABLE_SANDBOX=1
setsid .venv/bin/multicellpose ${FOLDER:+"$FOLDER"} --native > native_check.log 2>&1 &  # own process group
APP=$!
sleep 25
.venv/bin/python - "$SHOT" <<'PY'
import sys
from PIL import ImageGrab
im = ImageGrab.grab(xdisplay=None)
im.save(sys.argv[1])
lit = sum(1 for p in im.get_flattened_data() if p != (0, 0, 0)) if hasattr(im, "get_flattened_data") else -1
print(f"window screenshot {sys.argv[1]} {im.size}, {lit} lit pixels")
sys.exit(0 if lit != 0 else 1)
PY
