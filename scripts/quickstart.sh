#!/usr/bin/env bash
# The quickstart (examples/00_quickstart.cpp): builds a small Llama-shaped model and a synthetic addition task
# (nothing is downloaded), warms the model up with SFT, trains it with GRPO and a rule reward, and prints the
# accuracy before and after. Writes quickstart_out/{metrics.jsonl,metrics.svg,checkpoints/}.
#   ./scripts/quickstart.sh [out_dir]
# Set-up (Debian packages, LibTorch from PyPI into .venv/) runs first if needed; then only the quickstart's
# target is built.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${VERL_BUILD_DIR:-$repo/build}
out=${1:-$repo/quickstart_out}

"$repo/scripts/setup.sh"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" --target verl_example_00_quickstart
"$build/examples/verl_example_00_quickstart" "$out"
