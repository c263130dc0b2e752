#!/usr/bin/env bash
# CUDA check of `sweep`: build the `--features cuda` binary on a machine WITHOUT a GPU or nvcc,
# then train a tiny sweep on a GPU machine that has no Rust toolchain, and measure it.
#
#   bash bench/gpu_check.sh prepare   # here (no GPU needed; network for pip and crates.io)
#   bash bench/gpu_check.sh device    # on the GPU machine, in a copy of this repo that holds
#                                     # target/cuda/ (binary, data subset, spec) from `prepare`
#
# With this workplace's device tool: run(command="bash bench/gpu_check.sh device",
# carry=["target/cuda"], timeout_s=450); budgets: GPU_SECS (240), GPU512_SECS (90), CPU_SECS
# (150). Status: the build works (2026-11-28, 14 min on 2 cores, most of it nvcc compiling
# candle-kernels' gguf kernels); the device run has not happened yet (no machine was lent).
#
# `prepare` installs CUDA 13.0's compiler from PyPI (nvidia-cuda-nvcc & co., into $CUDAENV),
# makes link-time stubs for libcuda / cuBLAS / cuBLASLt / cuRAND / NVRTC / cuDNN (candle 0.11's
# cudarc links them dynamically; the real ones are loaded on the GPU machine), builds
# `sweep --features cuda` from `git archive HEAD` for compute capability $CUDA_COMPUTE_CAP
# (default 90: H100 / H200) into its own target dir, strips and xz-compresses it into
# target/cuda/sweep.xz (10 MB; 66 MB unpacked), and writes a class-balanced CIFAR-10 subset
# (5,000 train + 1,000 test records, 18 MB) from $CIFAR_TGZ and the spec
# target/cuda/gpu_check.yaml. target/ is git-ignored: carry `target/cuda` to the GPU machine.
# CUDA 13.0 (not newer) because the GPU machine's driver (580) runs PTX up to ISA 9.0; the
# binary needs libcudart.so.13, libcublas.so.13, libcurand.so.10 and libcudnn.so.9 there
# (`device` finds them, e.g. in PyTorch's cu13 wheels) and the driver's libcuda.so.1.
#
# `device` prints nvidia-smi, finds those libraries, runs the spec on cuda:0 (then ResNet-18 at
# batch 512, then the spec for 1 epoch on the CPU for comparison), samples GPU utilisation, and
# writes logs, `sweep status --json` and a per-run summary of the stored metrics (img/s, loss,
# top-1) to $OUT.
set -u
cmd=${1:-}
C=target/cuda

prepare() {
    set -e
    local env=${CUDAENV:-/work/cudaenv} tgz=${CIFAR_TGZ:-../shared/data/cifar-10-binary.tar.gz}
    local cap=${CUDA_COMPUTE_CAP:-90} tdir=${CUDA_TARGET_DIR:-/work/cuda-target}
    [ -x "$env/bin/pip" ] || python3 -m venv "$env"
    "$env/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 \
        nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
    local cu13 stubs=$env/cudaroot/lib
    cu13=$(echo "$env"/lib/python3*/site-packages/nvidia/cu13)
    local cudarc
    cudarc=$(ls -d ~/.cargo/registry/src/*/cudarc-0.19.* | tail -1)
    mkdir -p "$stubs" "$env/stubsrc"
    # lib soname dir-in-cudarc: every C function cudarc's bindings declare, as empty stubs.
    while read -r lib soname dir; do
        grep -hoE '^\s+fn [A-Za-z0-9_]+\(' "$cudarc/src/$dir"/sys/*.rs |
            sed -E 's/^\s+fn ([A-Za-z0-9_]+)\(/void \1(void){}/' | sort -u >"$env/stubsrc/$lib.c"
        gcc -shared -fPIC -o "$stubs/lib$lib.so" -Wl,-soname,"$soname" "$env/stubsrc/$lib.c"
    done <<'EOF'
cuda libcuda.so.1 driver
cublas libcublas.so.13 cublas
cublasLt libcublasLt.so.13 cublaslt
curand libcurand.so.10 curand
nvrtc libnvrtc.so.13 nvrtc
cudnn libcudnn.so.9 cudnn
EOF
    ln -sf "$cu13/lib/libcudart.so.13" "$stubs/libcudart.so"
    # A committed snapshot, so others' half-saved files cannot break the build.
    local src=${CUDA_SRC_DIR:-/work/cuda-src}
    rm -rf "$src" && mkdir -p "$src" && git archive HEAD | tar -x -C "$src"
    (cd "$src" && PATH=$cu13/bin:$PATH CUDA_ROOT=$env/cudaroot CUDA_COMPUTE_CAP=$cap \
        CARGO_TARGET_DIR=$tdir CUDAFORGE_THREADS=2 \
        nice cargo build --release --features cuda --bin sweep)
    mkdir -p $C/data/cifar-10-batches-bin
    # Stripped it is about 66 MB (candle's kernels: PTX + sm_90a code), over the 64 MiB a device
    # call carries: carry it xz-compressed (10 MB); `device` unpacks it.
    strip -o "$tdir/sweep-stripped" "$tdir/release/sweep"
    xz -T2 -6 -c "$tdir/sweep-stripped" >$C/sweep.xz
    local tmp
    tmp=$(mktemp -d)
    tar -xzf "$tgz" -C "$tmp"
    # 100 records of each class from every file: 1,000 per file, class-balanced (the
    # spec's train_subset draws 500 per class).
    python3 - "$tmp/cifar-10-batches-bin" $C/data/cifar-10-batches-bin <<'PY'
import sys
src, dst = sys.argv[1:]
for f in ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]:
    raw = open(f"{src}/{f}.bin", "rb").read()
    recs = [raw[i:i + 3073] for i in range(0, len(raw), 3073)]
    out = [r for c in range(10) for r in [r for r in recs if r[0] == c][:100]]
    assert len(out) == 1000, (f, len(out))
    open(f"{dst}/{f}.bin", "wb").write(b"".join(out))
PY
    cp "$tmp/cifar-10-batches-bin/batches.meta.txt" $C/data/cifar-10-batches-bin/
    rm -rf "$tmp"
    cat >$C/gpu_check.yaml <<'EOF'
# ConvNet and ResNet-18 (cifar stem): 2 epochs on 5,000 images, batch 256, then a linear probe.
name: gpu_check
description: "CUDA check: convnet + resnet18, 2 epochs on 5k images"
dataset: {name: cifar10, train_subset: 5000}
base:
  batch_size: 256
  epochs: 2
  optimizer: {kind: lars, lr: 1.0, lr_scaling: linear, warmup_epochs: 1}
  loss: {kind: nt_xent, temperature: 0.5}
  evals:
    - {kind: linear, on: h, train_subset: 5000, test_subset: 1000, epochs: 10}
grid:
  encoder:
    - {arch: convnet, width: 1}
    - {arch: resnet18, stem: cifar}
seeds: [0]
EOF
    ls -la $C
}

# Per-run summary of a store: state, steps, median/mean img/s (steps after the first), loss, top-1.
summary() {
    python3 - "$1" <<'EOF'
import json, sqlite3, statistics, sys
db = sqlite3.connect(sys.argv[1])
for rid, stage, label, state, err, secs, cfg in db.execute(
        "select r.id, r.stage, r.label, r.state, coalesce(r.failure, ''), r.compute_seconds,"
        " coalesce(p.config, r.config) from runs r left join runs p on p.id = r.parent_id"
        " order by r.stage desc, r.label"):
    arch = json.loads(cfg).get("encoder", {}).get("arch", "?")
    print(f"{stage:8} {rid[:12]} {arch:9} {label:10} {state} {secs:.1f}s {err[:300]}")
    rows = db.execute("select name, step, value from metrics where run_id=? order by name, step", (rid,)).fetchall()
    by = {}
    for n, s, v in rows:
        by.setdefault(n, []).append((s, v))
    ips = [v for s, v in by.get("train/images_per_sec", []) if s > 0]
    if ips:
        print(f"    img/s over {len(ips)} steps after the first: median {statistics.median(ips):.0f}, "
              f"mean {statistics.mean(ips):.0f}, max {max(ips):.0f}; first step "
              f"{by['train/images_per_sec'][0][1]:.0f}")
    for n, sv in sorted(by.items()):
        if n.startswith("train/"):
            continue
        print(f"    {n}: {sv[-1][1]:.4f} (step {sv[-1][0]}, {len(sv)} values)")
    loss = by.get("train/loss", [])
    if loss:
        print(f"    train/loss first {loss[0][1]:.4f} last {loss[-1][1]:.4f}")
EOF
}

device() {
    OUT=${OUT:-/tmp/gpu_check_out}
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu_check.log") 2>&1
    echo "== $(date -u) $(uname -a)"
    timeout 20 nvidia-smi
    # Libraries the binary links (cudarc: dynamic linking) and cuDNN's sub-libraries beside them.
    local dirs="" so p hits
    hits=$(timeout 90 find /usr/local/cuda/lib64/ /usr/local/cuda/ /usr/lib /usr/local/lib /opt \
        \( -name libcudart.so.13 -o -name 'libcublas*.so.13' -o -name libcurand.so.10 \
        -o -name libnvrtc.so.13 -o -name libcudnn.so.9 \) 2>/dev/null)
    for so in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libcudnn.so.9; do
        p=$(grep -m1 "/$so\$" <<<"$hits")
        echo "lib $so: ${p:-NOT FOUND} ($(grep -c "/$so\$" <<<"$hits") found)"
        [ -n "$p" ] && dirs="$dirs:$(dirname "$(readlink -f "$p")")"
    done
    if ! ldconfig -p | grep -q 'libcuda\.so\.1 '; then # the driver's library, if not in ld.so's cache
        p=$(timeout 30 find /usr/local/nvidia /usr/lib /usr/lib64 -name libcuda.so.1 2>/dev/null | head -1)
        echo "lib libcuda.so.1: ${p:-NOT FOUND}"
        [ -n "$p" ] && dirs="$dirs:$(dirname "$p")"
    fi
    export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    local bin=$C/sweep
    if [ ! -x $bin ] && [ -f $C/sweep.xz ]; then
        bin=/tmp/sweep-cuda
        xz -dc $C/sweep.xz >$bin 2>/dev/null || python3 -c 'import lzma, shutil, sys
shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' $C/sweep.xz $bin
        chmod +x $bin
    fi
    ldd $bin | grep -E 'not found|cuda|cublas|cudnn|curand|nvrtc|stdc'
    export SWEEP_DATA_DIR=$C/data
    local w
    w=$(mktemp -d)
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 >"$OUT/smi.csv" 2>&1 &
    local smi=$!
    echo "== GPU run (cuda:0)"
    local t0=$SECONDS
    timeout -k 5 ${GPU_SECS:-240} $bin --db "$w/gpu.db" --runs-dir "$w/runs-gpu" run $C/gpu_check.yaml --devices cuda:0
    local rc=$?
    echo "gpu run: rc=$rc wall=$((SECONDS - t0))s"
    if [ $rc = 0 ]; then
        echo "== GPU run: ResNet-18 at batch 512, 1 epoch"
        t0=$SECONDS
        timeout -k 5 ${GPU512_SECS:-90} $bin --db "$w/gpu.db" --runs-dir "$w/runs-gpu" run $C/gpu_check.yaml --devices cuda:0 \
            --set batch_size=512 --set epochs=1 --set 'encoder={arch: resnet18, stem: cifar}'
        echo "gpu b512 run: rc=$? wall=$((SECONDS - t0))s"
    fi
    kill $smi 2>/dev/null
    timeout 30 $bin --db "$w/gpu.db" status gpu_check --json >"$OUT/gpu_status.json" 2>&1
    summary "$w/gpu.db"
    echo "== CPU run (same spec, 1 epoch, $(nproc) cores)"
    t0=$SECONDS
    timeout -k 5 ${CPU_SECS:-150} $bin --db "$w/cpu.db" --runs-dir "$w/runs-cpu" run $C/gpu_check.yaml --devices cpu --set epochs=1
    echo "cpu run: rc=$? wall=$((SECONDS - t0))s"
    summary "$w/cpu.db"
    timeout 30 $bin --db "$w/cpu.db" status gpu_check --json >"$OUT/cpu_status.json" 2>&1
    echo "== done $(date -u)"
}

case $cmd in
prepare) prepare ;;
device) device ;;
*)
    echo "usage: bash bench/gpu_check.sh prepare|device" >&2
    exit 2
    ;;
esac
