#!/usr/bin/env bash
# One command to install headpose-edge with everything its tests and tools need, on a fresh machine:
#   ./install.sh
# Creates .venv/ in this checkout (Python 3.11) and installs the project editable with the
# convert, bench and dev extras. Set HEADPOSE_PYTHON to choose another interpreter.
set -euo pipefail
cd "$(dirname "$0")"

PY="${HEADPOSE_PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  echo "install.sh: creating .venv with $PY"
  "$PY" -m venv .venv
fi
# torch==2.13.0 is pinned by the convert extra: pip takes the CPU build (a range would pull CUDA).
.venv/bin/python -m pip install --disable-pip-version-check -q -e ".[convert,bench,dev]"
# The embedded default detector and sample images: the scrfd==0.3.0 sdist from the package index,
# checksummed, unpacked into weights/cache/ (see convert/defaults.py). Nothing downloads at test time.
.venv/bin/python -c "from headpose.convert.defaults import fetch_scrfd_package as f; print('install.sh: default detector in', f())"
.venv/bin/python -c "import headpose, headpose.runtime, headpose.convert; print('install.sh: headpose-edge', headpose.__version__, 'installed in .venv')"
