#!/usr/bin/env bash
# One-time set-up, safe to re-run: Debian packages for headless rendering (and
# the test browser), a virtual environment in .venv, and the pinned packages.
#   bash setup.sh            # app + library
#   bash setup.sh --tests    # also chromium for the browser tests
set -euo pipefail
cd "$(dirname "$0")"

want=(libegl1 libopengl0 libgl1-mesa-dri)
if [[ "${1:-}" == "--tests" ]]; then want+=(chromium); fi
missing=()
for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
# torch==2.13.0 is pinned first so pip never resolves a multi-GB CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
echo "set-up done: .venv ready"
