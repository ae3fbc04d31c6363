#!/usr/bin/env bash
# Set up spn-napari in ./.venv on a fresh Debian/Ubuntu machine (or reuse it):
#   - the X virtual framebuffer and the xcb/GL libraries napari needs for headless GUI tests,
#   - torch first, pinned, so pip does not pull a different (multi-GB CUDA) build,
#   - the package itself, editable, with its test extra.
# Environment: SPN_TORCH (default "torch==2.13.0"; set e.g. "torch" on a GPU machine),
#              SPN_VENV (default .venv), SPN_SKIP_APT=1 to skip the system packages.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPN_VENV:-.venv}"
APT_PKGS="xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
 libxcb-shape0 libxcb-render-util0 libxcb-image0 libxcb-randr0 libxcb-xinerama0 libxcb-xfixes0
 libxcb-xkb1 libdbus-1-3 libfontconfig1 libglib2.0-0"

if [ "${SPN_SKIP_APT:-0}" != 1 ] && ! command -v xvfb-run >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Xvfb and the xcb/GL libraries (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $APT_PKGS >/dev/null
  else
    echo "setup: xvfb-run not found; GUI tests need it (apt-get install xvfb as root)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
pip_install() {  # quiet unless it fails; then show pip's own messages and stop
  local log
  log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" >&2
    echo "setup: pip install $* failed" >&2
    exit 1
  fi
  rm -f "$log"
}
pip_install "${SPN_TORCH:-torch==2.13.0}"
pip_install -e ".[test]"
"$VENV/bin/python" -c "import torch, napari, zarr, skimage, spn_napari; print('setup: ok — torch', torch.__version__, '| napari', napari.__version__, '| zarr', zarr.__version__)" >&2
