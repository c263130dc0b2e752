#!/usr/bin/env bash
# A stand-in for nvcc that lets `cargo check` / `cargo clippy --features cuda` run where no
# CUDA toolkit is installed: it answers the version and GPU-code queries the build scripts
# of cudarc and candle-kernels make, and writes an empty file for each output they ask for
# (PTX, objects, the static library). Type-checking never links or runs those outputs, so
# what is checked is the Rust code under the `cuda` feature; the kernels themselves are
# compiled by the real nvcc in bench/gpu_check.sh `prepare`. .ci/cuda_build.sh puts it on
# PATH as `nvcc`.
set -eu
case " $* " in
*" --version "*)
    printf '%s\n' "nvcc: NVIDIA (R) Cuda compiler driver (stand-in for type-checking)" \
        "Copyright (c) NVIDIA Corporation" "Built for simclr-sweep's CI" \
        "Cuda compilation tools, release 13.0, V13.0.88" "Build cuda_13.0"
    exit 0
    ;;
*" --list-gpu-code "*) printf 'sm_%s\n' 75 80 86 89 90 100 120; exit 0 ;;
*" --list-gpu-arch "*) printf 'compute_%s\n' 75 80 86 89 90 100 120; exit 0 ;;
esac
out="" dir="" ptx=0 src=""
while [ $# -gt 0 ]; do
    case $1 in
    -o) out=$2; shift ;;
    --output-directory) dir=$2; shift ;;
    --ptx) ptx=1 ;;
    *.cu) src=$1 ;;
    esac
    shift
done
if [ "$ptx" = 1 ] && [ -n "$src" ]; then
    name=$(basename "$src" .cu)
    : >"${out:-${dir:-.}/$name.ptx}"
elif [ -n "$out" ]; then
    : >"$out"
fi
