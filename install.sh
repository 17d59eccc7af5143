#!/usr/bin/env bash
# One command to install headpose-edge with everything its tests and tools need, on a fresh machine:
#   ./install.sh
# Creates .venv/ in this checkout (Python 3.11) and installs the project editable with the
# convert, bench and dev extras. Set HEADPOSE_PYTHON to choose another interpreter.
set -euo pipefail
cd "$(dirname "$0")"

# --- android_demo (issue 7): a JDK for tests/android, which compiles android_demo/core with javac
# (Debian's kotlin package is 1.3, too old, so the core module is plain Java 11). Installed from
# Debian's packages when running as root with apt-get (CI); elsewhere tests/android skips, saying
# why. Set HEADPOSE_NO_APT=1 to leave system packages alone.
if ! command -v javac >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${HEADPOSE_NO_APT:-0}" != 1 ]; then
    echo "install.sh: installing a JDK (openjdk-17-jdk-headless) for the android_demo core test"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      openjdk-17-jdk-headless \
      || echo "install.sh: WARNING: JDK install failed; tests/android will be skipped" >&2
  else
    echo "install.sh: no javac and not root with apt-get: tests/android will be skipped" \
         "(install openjdk-17-jdk-headless to run it)" >&2
  fi
fi
# --- end android_demo

# --- live view (issue 16): headless Chromium + chromedriver for tests/browser, which loads the
# `headpose run --serve` page. Same rule as the JDK: Debian's packages as root with apt-get, unless
# HEADPOSE_NO_APT=1; elsewhere tests/browser skips, saying why. The device install never needs them.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${HEADPOSE_NO_APT:-0}" != 1 ]; then
    echo "install.sh: installing headless Chromium (chromium, chromium-driver) for the live view's browser test"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      chromium chromium-driver fonts-liberation \
      || echo "install.sh: WARNING: Chromium install failed; tests/browser will be skipped" >&2
  else
    echo "install.sh: no chromium/chromedriver and not root with apt-get: tests/browser will be skipped" \
         "(install chromium and chromium-driver to run it)" >&2
  fi
fi
# --- end live view

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
