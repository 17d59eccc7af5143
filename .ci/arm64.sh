#!/usr/bin/env bash
# ARM64 leg: the device runtime installed and tested on emulated Raspberry Pi CPUs (qemu-user).
#
#   bash .ci/arm64.sh            # run by .ci/run after the x86 test suite
#
# 1. Emulated Raspberry Pi OS (Debian bookworm arm64, Python 3.11) root: `debootstrap --foreign` +
#    `dpkg -x` of its packages. qemu-user runs each aarch64 binary directly with `-L ROOT`: no chroot,
#    no binfmt registration (so nothing in the emulated world may spawn another aarch64 process).
# 2. A venv in that root, filled by the aarch64 pip itself from PyPI, exactly as on a Pi:
#    `pip install headpose_edge-*.whl pytest` pulls only the bare install's dependencies (NumPy +
#    ai-edge-litert, no OpenCV). The pure-Python wheel is built here on x86 (a Pi would build the same
#    files from the checkout; building needs a subprocess, which the emulation cannot start).
# 3. x86 half of the golden check (tests/arm64/arm64_golden.py prepare): real SCRFD-500M and a seeded
#    pose model converted to TFLite int8 + fp32, a few real frames as .npy, the x86 LiteRT results.
# 4. Per CPU (cortex-a72 = Pi 4, cortex-a76 = Pi 5): a Pi-like /proc/cpuinfo for that core, then the
#    runtime's unit tests that need no OpenCV + tests/arm64/test_golden_arm.py under the emulated pytest.
#
# Root, venv and converted artifacts are cached outside the checkout in $HEADPOSE_ARM64_CACHE
# (default /var/cache/headpose-arm64, or ~/.cache/headpose-arm64 when not root), keyed by a hash of
# what they are built from. When the leg cannot run (not Linux x86_64, no root to install qemu, the
# Debian mirror or PyPI unreachable, HEADPOSE_ARM64=0) it prints "ARM64 leg SKIPPED: <why>" and exits 0.
# Timings under emulation mean nothing; this leg checks results, never speed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

SUITE=bookworm                   # Raspberry Pi OS 12 (bookworm) = Debian 12: Python 3.11
PYVER=3.11
PACKAGES=python3,python3-venv,libpython3.11
MIRROR=${HEADPOSE_ARM64_MIRROR:-http://deb.debian.org/debian}
CPUS=${HEADPOSE_ARM64_CPUS:-cortex-a72 cortex-a76}
HOSTPY=${HEADPOSE_HOST_PYTHON:-$REPO/.venv/bin/python}
# The runtime's unit tests that need neither OpenCV nor torch (torch-only tests skip themselves).
UNIT_TESTS=(tests/unit/test_rotation.py tests/unit/test_registry.py tests/unit/test_manifest.py
            tests/runtime/test_smoothing.py tests/runtime/test_tracking.py)
RECIPE="recipe-1 $SUITE arm64 minbase $PACKAGES $MIRROR dpkg-x venv-without-pip"

say() { echo "arm64 $(date -u +%T): $*"; }
skip() { echo "ARM64 leg SKIPPED: $*"; exit 0; }
die() { echo "ARM64 leg FAILED: $*" >&2; exit 1; }
hash_of() { sha256sum | cut -c1-12; }
trap 'echo "ARM64 leg FAILED: command at .ci/arm64.sh line $LINENO exited $?" >&2' ERR

[ "${HEADPOSE_ARM64:-1}" != 0 ] || skip "disabled by HEADPOSE_ARM64=0"
[ "$(uname -s)" = Linux ] || skip "qemu-user needs a Linux host; this is $(uname -s)"
case "$(uname -m)" in
  x86_64) ;;
  aarch64) skip "the host is already aarch64: the x86 test run above ran the suite natively" ;;
  *) skip "host $(uname -m) is not x86_64 (the emulated leg is set up for x86_64 hosts)" ;;
esac
[ -x "$HOSTPY" ] || die "no x86 interpreter at $HOSTPY: run ./install.sh first"

if [ "$(id -u)" = 0 ]; then CACHE=${HEADPOSE_ARM64_CACHE:-/var/cache/headpose-arm64}
else CACHE=${HEADPOSE_ARM64_CACHE:-$HOME/.cache/headpose-arm64}; fi
mkdir -p "$CACHE" 2>/dev/null && [ -w "$CACHE" ] || skip "no writable cache folder $CACHE (set HEADPOSE_ARM64_CACHE)"
exec 9>"$CACHE/lock"
flock 9   # one leg at a time per cache (the cpuinfo file in the root is per run)

# --- tools: qemu-user-static, debootstrap (Debian packages) --------------------------------------
QEMU=$(command -v qemu-aarch64-static || true)
if [ -z "$QEMU" ] || ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || skip "qemu-user-static/debootstrap are not installed and this is not root (apt-get install -y qemu-user-static debootstrap)"
  command -v apt-get >/dev/null || skip "qemu-user-static/debootstrap are not installed and there is no apt-get"
  say "installing qemu-user-static debootstrap with apt-get"
  apt-get update -q >"$CACHE/apt.log" 2>&1 || skip "apt-get update failed (Debian's package mirror unreachable?): $(tail -2 "$CACHE/apt.log" | tr '\n' ' ')"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static debootstrap >>"$CACHE/apt.log" 2>&1 \
    || skip "apt-get install qemu-user-static debootstrap failed: $(tail -2 "$CACHE/apt.log" | tr '\n' ' ')"
  QEMU=$(command -v qemu-aarch64-static) || die "qemu-aarch64-static is missing after apt-get install"
fi
say "$("$QEMU" --version | head -1)"

reachable() {  # reachable URL: is a host answering (the leg needs the Debian mirror and PyPI to build)
  "$HOSTPY" - "$1" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=20)
except Exception as e:
    print(f"{sys.argv[1]}: {e}"); sys.exit(1)
EOF
}

# --- 1. emulated root -----------------------------------------------------------------------------
ROOT=$CACHE/root-$(echo "$RECIPE" | hash_of)
if [ ! -f "$ROOT/.complete" ]; then
  [ "$(id -u)" = 0 ] || skip "building the arm64 root needs root (debootstrap); none is cached in $CACHE"
  why=$(reachable "$MIRROR/dists/$SUITE/Release") || skip "cannot reach Debian's mirror to build the arm64 root: $why"
  say "building the arm64 $SUITE root in $ROOT (once; cached)"
  rm -rf "$CACHE"/root-* "$CACHE"/venv-*
  tmp=$CACHE/.root-tmp.$$
  rm -rf "$tmp"
  debootstrap --foreign --arch=arm64 --variant=minbase --include=$PACKAGES $SUITE "$tmp" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed: $(tail -3 "$CACHE/debootstrap.log" | tr '\n' ' ')"
  for deb in "$tmp"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$tmp"; done
  rm -f "$tmp"/var/cache/apt/archives/*.deb
  QEMU_CPU=cortex-a72 "$QEMU" -L "$tmp" "$tmp/usr/bin/python$PYVER" -c "import platform, venv; assert platform.machine() == 'aarch64'" \
    || die "the emulated python$PYVER does not run"
  touch "$tmp/.complete"
  mv "$tmp" "$ROOT"
fi
rm -f "$ROOT/proc/cpuinfo"
RUN() { "$QEMU" -L "$ROOT" "$@"; }   # run an aarch64 program of the emulated root

# --- 2. venv with the device install, filled by the aarch64 pip -------------------------------------
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; rm -f "$ROOT/proc/cpuinfo"' EXIT
mkdir -p "$WORK/src"
tar -ch --exclude=__pycache__ -C "$REPO" pyproject.toml README.md src | tar -x -C "$WORK/src"
"$HOSTPY" -m pip wheel -q --no-deps --no-build-isolation --disable-pip-version-check -w "$WORK/wheel" "$WORK/src" \
  >"$WORK/wheel.log" 2>&1 || die "building the project wheel failed: $(tail -5 "$WORK/wheel.log")"
WHEEL=$(ls "$WORK"/wheel/headpose_edge-*.whl)
SRC_HASH=$(cd "$WORK/src" && find . -type f | LC_ALL=C sort | xargs sha256sum | hash_of)
PIPWHL=$(ls "$ROOT"/usr/share/python-wheels/pip-*.whl)
VENV=$CACHE/venv-$( (echo "$RECIPE"; cat "$REPO/pyproject.toml"; basename "$PIPWHL") | hash_of)
# The aarch64 pip, run from Debian's pip wheel (a venv --without-pip: ensurepip would need a subprocess).
# The host's pip configuration (local x86 wheel folders) is not the device's: use none.
PIP() { QEMU_CPU=cortex-a72 PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_CACHE_DIR="$CACHE/pip-cache" PYTHONPATH="$PIPWHL" RUN "$VENV/bin/python" -m pip "$@"; }
if [ ! -f "$VENV/.complete" ]; then
  why=$(reachable https://pypi.org/simple/ai-edge-litert/) || skip "cannot reach PyPI to install the device packages: $why"
  say "creating the device venv $VENV and pip-installing the bare wheel as a Pi does (once; cached)"
  rm -rf "$CACHE"/venv-*
  QEMU_CPU=cortex-a72 RUN "$ROOT/usr/bin/python$PYVER" -m venv --without-pip "$VENV"
  PIP install -q --no-compile "$WHEEL" pytest >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; rm -rf "$VENV"; die "the aarch64 pip install of the device wheel failed"; }
  touch "$VENV/.complete"
elif [ "$(cat "$VENV/.source" 2>/dev/null)" != "$SRC_HASH" ]; then
  say "device venv cached: $VENV (re-installing this checkout's wheel, no dependency changes)"
  PIP install -q --no-compile --no-deps --force-reinstall "$WHEEL" >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; die "re-installing the wheel failed"; }
else
  say "device venv cached: $VENV (this checkout's wheel is already installed)"
fi
echo "$SRC_HASH" >"$VENV/.source"
say "device install: $(QEMU_CPU=cortex-a72 RUN "$VENV/bin/python" -c 'from importlib.metadata import distributions as d; print(" ".join(sorted(x.metadata["Name"] + "==" + x.version for x in d())))')"

# --- 3. x86 half of the golden check --------------------------------------------------------------
GOLDEN=$WORK/golden
SHARED=${HEADPOSE_SHARED:-$REPO/../shared}
# Converted artifacts are kept while the set of models they are made from stays the same, not re-made
# on every converter edit: the check compares one runtime on two architectures for the SAME artifact,
# and converting costs minutes on 2 cores. arm64_golden.py re-converts one this runtime no longer accepts.
ART=$CACHE/artifacts-$("$HOSTPY" tests/arm64/arm64_golden.py artifact-set | hash_of)
GOLDEN_TEST=()
if [ -f "$SHARED/data/in_video.mp4" ] && [ -f "$SHARED/weights/scrfd_500m_bnkps.onnx" ]; then
  for old in "$CACHE"/artifacts-*; do [ "$old" = "$ART" ] || rm -rf "$old"; done
  say "golden inputs: converting/reusing artifacts in $ART and running them on x86"
  nice -n 10 "$HOSTPY" tests/arm64/arm64_golden.py prepare --out "$GOLDEN" --cache "$ART" --shared "$SHARED" \
    >"$WORK/prepare.log" 2>&1 || { tail -40 "$WORK/prepare.log"; die "preparing the golden inputs on x86 failed"; }
  grep "golden inputs in" "$WORK/prepare.log" | sed 's/^/arm64: /' || true
  GOLDEN_TEST=(tests/arm64/test_golden_arm.py)
else
  echo "ARM64 golden check SKIPPED: real data $SHARED/data/in_video.mp4 or weights/scrfd_500m_bnkps.onnx absent (unit tests still run)"
fi

# --- 4. per emulated CPU: Pi-like /proc/cpuinfo, then pytest under qemu ---------------------------
status=0
reports=()
for cpu in $CPUS; do
  QEMU_CPU=$cpu RUN "$VENV/bin/python" tests/arm64/emulated_cpuinfo.py "$cpu" >"$WORK/cpuinfo" \
    || die "could not describe $cpu (tests/arm64/emulated_cpuinfo.py knows cortex-a72 and cortex-a76)"
  cp "$WORK/cpuinfo" "$ROOT/proc/cpuinfo"
  say "== $cpu: $(grep -m1 '^Features' "$WORK/cpuinfo")"
  reports+=("$WORK/report-$cpu.json")
  QEMU_CPU=$cpu HEADPOSE_ARM64_GOLDEN=$GOLDEN HEADPOSE_ARM64_REPORT="$WORK/report-$cpu.json" \
    PYTHONDONTWRITEBYTECODE=1 RUN "$VENV/bin/python" -P -m pytest -p no:cacheprovider -q -rs \
    "${UNIT_TESTS[@]}" "${GOLDEN_TEST[@]}" || status=1
done
rm -f "$ROOT/proc/cpuinfo"

if [ ${#GOLDEN_TEST[@]} -gt 0 ]; then
  say "golden comparison, aarch64 (qemu) vs x86, same artifacts and frames:"
  present=()
  for r in "${reports[@]}"; do [ -f "$r" ] && present+=("$r"); done
  if [ ${#present[@]} -gt 0 ]; then "$HOSTPY" tests/arm64/arm64_golden.py summary "${present[@]}" || status=1
  else status=1; say "no golden report was written"; fi
fi
[ $status = 0 ] || die "tests failed on the emulated ARM64 CPUs (see above)"
echo "ARM64 leg passed on: $CPUS (qemu-user emulation; emulated timings are not device speed)"
