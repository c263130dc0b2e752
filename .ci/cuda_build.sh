#!/usr/bin/env bash
# Keeps the `cuda` feature compiling on machines without a GPU or a CUDA toolkit: lints
# every target with `--features cuda` (`cargo clippy -D warnings`: the code under the
# feature is type-checked, nothing is linked or run). The build scripts of candle's kernels
# and of cudarc need an nvcc; .ci/nvcc_standin.sh stands in for it (version queries, empty
# PTX and objects), since type-checking never uses what it compiles. The kernels
# themselves are compiled by the real nvcc in `bash bench/gpu_check.sh prepare`.
#
#   bash .ci/cuda_build.sh
#
# Settings: CUDA_CHECK_DIR (its target directory, default target/cuda-check),
# CUDA_COMPUTE_CAP (default 90).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$PWD/target/nvcc-standin/bin
mkdir -p "$bin"
cp .ci/nvcc_standin.sh "$bin/nvcc"
chmod +x "$bin/nvcc"

start=$SECONDS
PATH=$bin:$PATH CUDA_ROOT=$PWD/target/nvcc-standin CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} \
    CARGO_TARGET_DIR=${CUDA_CHECK_DIR:-$PWD/target/cuda-check} \
    cargo clippy --locked --features cuda --all-targets -- -D warnings
echo "cuda feature: clippy --all-targets clean in $((SECONDS - start)) s"
