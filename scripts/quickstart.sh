#!/usr/bin/env bash
# Installs what is missing, builds the examples and runs the main one.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${VERL_BUILD_DIR:-$repo/build}

"$repo/scripts/setup.sh"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" --parallel "${VERL_JOBS:-$(nproc)}" --target verl_example_00_quickstart
"$build/examples/verl_example_00_quickstart"
