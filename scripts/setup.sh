#!/usr/bin/env bash
# Installs what verl-cpp needs, idempotently: Debian packages that are missing, and LibTorch from PyPI's
# `torch` wheel into a virtual environment at ${VERL_VENV:-<repo>/.venv}, which CMake finds by itself.
# A second run installs nothing and takes seconds. Versions are pinned in scripts/dependencies.env.
#
# Environment:
#   VERL_VENV            where the virtual environment lives (default: <repo>/.venv)
#   VERL_TORCH_FALLBACK  set to 1 to skip PyPI and use Debian's libtorch-dev 1.13 + OpenBLAS
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=dependencies.env
source "$repo/scripts/dependencies.env"
venv=${VERL_VENV:-$repo/.venv}
log() { printf '[verl setup] %s\n' "$*"; }

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing_debian_packages() {
  local p out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || out+=("$p")
  done
  echo "${out[@]:-}"
}

install_debian_packages() {
  local missing
  missing=$(missing_debian_packages "$@")
  [ -z "$missing" ] && return 0
  log "installing Debian packages: $missing"
  sudo_if_needed apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# shellcheck disable=SC2086
install_debian_packages $VERL_DEBIAN_PACKAGES

stamp="$venv/.verl-torch-$VERL_TORCH_VERSION"
fallback_stamp="$venv/.verl-torch-debian-fallback"

# The parity tests' reference implementations (transformers, tokenizers, ...), into the venv. Optional: when
# this fails the parity tests skip with the reason recorded in $venv/.verl-python-test-packages.failed.
install_python_test_packages() {
  local py_stamp="$venv/.verl-python-test-packages-$(echo "$VERL_PYTHON_TEST_PACKAGES" | cksum | cut -d' ' -f1)"
  [ -f "$py_stamp" ] && return 0
  [ -x "$venv/bin/python" ] || { log "no virtual environment at $venv: parity tests will skip"; return 0; }
  log "installing the parity tests' reference packages: $VERL_PYTHON_TEST_PACKAGES"
  # shellcheck disable=SC2086
  if "$venv/bin/python" -m pip install -q --disable-pip-version-check $VERL_PYTHON_TEST_PACKAGES \
       2>"$venv/.verl-python-test-packages.failed"; then
    rm -f "$venv/.verl-python-test-packages.failed"
    touch "$py_stamp"
  else
    log "WARNING: could not install $VERL_PYTHON_TEST_PACKAGES; the parity tests will skip (see $venv/.verl-python-test-packages.failed)"
  fi
}

if [ -f "$stamp" ] || { [ -f "$fallback_stamp" ] && [ "${VERL_TORCH_FALLBACK:-0}" = 1 ]; }; then
  log "LibTorch already installed in $venv"
  install_python_test_packages
  exit 0
fi

use_fallback() {
  log "falling back to Debian's libtorch-dev 1.13 with OpenBLAS (requested with VERL_TORCH_FALLBACK=1, or PyPI's torch could not be installed)"
  # shellcheck disable=SC2086
  install_debian_packages $VERL_DEBIAN_TORCH_FALLBACK
  mkdir -p "$venv" && touch "$fallback_stamp"
}

if [ "${VERL_TORCH_FALLBACK:-0}" = 1 ]; then use_fallback; exit 0; fi

python=${PYTHON:-python3}
if ! "$python" -m venv --help >/dev/null 2>&1; then
  install_debian_packages python3-venv
  python=/usr/bin/python3
fi
log "creating $venv with torch==$VERL_TORCH_VERSION from PyPI"
rm -rf "$venv"
if "$python" -m venv "$venv" &&
   "$venv/bin/python" -m pip install -q --disable-pip-version-check "torch==$VERL_TORCH_VERSION"; then
  touch "$stamp"
  log "LibTorch $VERL_TORCH_VERSION ready: $("$venv/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null)"
  install_python_test_packages
else
  use_fallback
fi
