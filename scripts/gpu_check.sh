#!/usr/bin/env bash
# Runs ON a lent GPU machine (CUDA LibTorch in python3, cmake, ninja, nvcc; no package registry), over the
# dependencies that scripts/gpu_sysroot.sh collected into .devsys on a development machine:
#   scripts/gpu_check.sh build      configure a CUDA build in build-gpu/ and build everything
#   scripts/gpu_check.sh test [..]  run CTest there (extra arguments go to ctest), then the GPU runs below
# Logs go to $OUT when it is set (the device tool's output folder), else to build-gpu/.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sys=$repo/.devsys
build=$repo/build-gpu
out=${OUT:-$build}
mkdir -p "$build" "$out"
[[ -d $sys/usr ]] || { echo "gpu_check: $sys is missing; run scripts/gpu_sysroot.sh first (and carry .devsys)" >&2; exit 2; }
export LD_LIBRARY_PATH=$sys/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_LIBDIR=$sys/usr/lib/x86_64-linux-gnu/pkgconfig PKG_CONFIG_SYSROOT_DIR=$sys
export VERL_VENV=$build/no-venv  # the parity tests' reference packages are not there: they skip and say so
mode=${1:-build}
shift || true
case $mode in
build)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  torch_dir=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')/Torch
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTorch_DIR="$torch_dir" \
        -DCMAKE_PREFIX_PATH="$sys/usr" -DPKG_CONFIG_EXECUTABLE="$sys/usr/bin/pkgconf" \
        -DTORCH_CUDA_ARCH_LIST=9.0 >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
  grep -E "verl: (LibTorch|VERL_WITH_CUDA)" "$out/configure.log"
  start=$(date +%s)
  cmake --build "$build" --parallel "$(nproc)" >"$out/build.log" 2>&1 || { grep -B2 -A12 "error" "$out/build.log" | head -80; exit 1; }
  echo "gpu_check: built in $(( $(date +%s) - start )) s"
  ;;
test)
  export OMP_NUM_THREADS=2
  ctest --test-dir "$build" --parallel 8 --timeout 300 "$@" >"$out/ctest.log" 2>&1 || true
  tail -30 "$out/ctest.log"
  # The whole GRPO pipeline (rollout engine, rewards, log-probs, update, validation, checkpoints) on the GPU,
  # with the YAML binary over the demo's files.
  demo=$build/demo_main_ppo && rm -rf "$demo"
  if (cd "$build" && ./examples/verl_example_07_main_ppo --demo "$demo" >"$out/main_ppo_cpu.log" 2>&1 &&
      ./examples/verl_example_07_main_ppo "$demo/demo.yaml" trainer.device=cuda trainer.total_training_steps=4 \
        trainer.default_local_dir="$demo/checkpoints_cuda" >"$out/main_ppo_cuda.log" 2>&1); then
    echo "gpu_check: 07_main_ppo on cuda passed"; grep -E "^step [0-9]+:" "$out/main_ppo_cuda.log" | cut -c1-300
  else
    echo "gpu_check: 07_main_ppo on cuda FAILED"; tail -30 "$out/main_ppo_cuda.log"
  fi
  ;;
*) echo "usage: $0 build|test [ctest args]" >&2; exit 2 ;;
esac
