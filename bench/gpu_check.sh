#!/usr/bin/env bash
# GPU check of `sweep`: trains a small sweep (ConvNet and ResNet-18 with the CIFAR stem,
# 2 epochs on 5,000 CIFAR-10 images at batch 256, then a linear probe) on cuda:0, then
# ResNet-18 for one epoch at batch 512, then the same spec for one epoch on the CPU for
# comparison. It prints nvidia-smi, the CUDA libraries it found, and per run the state,
# images/s, loss and top-1, samples GPU utilisation once a second, and writes all of it to
# $OUT (default target/cuda/out/).
#
#   bash bench/gpu_check.sh data      # the data subset and the spec, into target/cuda/
#   bash bench/gpu_check.sh prepare   # `data`, plus a CUDA build of sweep made without a GPU
#   bash bench/gpu_check.sh run       # on the GPU machine: the check itself
#   bash bench/gpu_check.sh bench     # on the GPU machine: bench/gpu_bench.sh's measurements
#   bash bench/gpu_check.sh verdict   # on the GPU machine: the cuDNN ops' verdict table (< 8 min)
#
# Three ways to run it:
#
# 1. On a GPU machine you reach by ssh, with Rust and the CUDA toolkit (nvcc, cuDNN):
#      ssh gpu-host
#      cd simclr-sweep && cargo build --release --features cuda
#      bash bench/gpu_check.sh data && bash bench/gpu_check.sh run
#    (`run` uses target/release/sweep when `prepare` has not made a binary.)
#
# 2. Build on a machine without a GPU or nvcc, then copy to a GPU machine without Rust:
#      bash bench/gpu_check.sh prepare
#      rsync -a --relative bench/gpu_check.sh target/cuda gpu-host:simclr-sweep/
#      ssh gpu-host 'cd simclr-sweep && bash bench/gpu_check.sh run'
#
# 3. As a Slurm job, from a checkout on a filesystem the compute nodes share, after
#    `prepare` (or `data` and a `--features cuda` build):
#      sbatch --gres=gpu:1 --time=00:20:00 --output=gpu_check_%j.log \
#          --wrap 'bash bench/gpu_check.sh run'
#
# `data` writes a class-balanced CIFAR-10 subset (5,000 train + 2,000 test records, 21 MB)
# to target/cuda/data/ and the spec to target/cuda/gpu_check.yaml. It reads $CIFAR_TGZ, else
# the data directory ($SWEEP_DATA_DIR, default data/): cifar-10-binary.tar.gz or
# cifar-10-batches-bin/ (`sweep data fetch cifar10` downloads the archive).
#
# `prepare` builds `sweep --features cuda` on a machine that has neither a GPU nor the CUDA
# toolkit. It installs CUDA 13.0's compiler and runtime from PyPI (nvidia-cuda-nvcc & co.)
# into a virtual environment ($CUDAENV, default target/cuda-env), makes empty link-time
# stand-ins for libcuda, cuBLAS, cuBLASLt, cuRAND, NVRTC and cuDNN (candle's CUDA bindings,
# cudarc, link them dynamically; the real ones are loaded on the GPU machine), builds the
# committed tree (`git archive HEAD` into $CUDA_SRC_DIR, default target/cuda-src:
# uncommitted edits are not in the binary) for compute capability $CUDA_COMPUTE_CAP
# (default 90: H100 / H200) in its own target directory ($CUDA_TARGET_DIR, default
# target/cuda-build), and writes the binary stripped and xz-compressed to
# target/cuda/sweep.xz (10 MB; 66 MB unpacked). It needs python3, gcc, xz and access to
# PyPI and crates.io; the build takes about 15 minutes on 2 cores, most of it nvcc
# compiling candle's kernels. CUDA 13.0 because its PTX loads with NVIDIA driver 580 and
# newer.
#
# On the GPU machine the prepared binary needs the driver's libcuda.so.1 and
# libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13 and
# libcudnn.so.9: from a CUDA 13 toolkit with cuDNN 9, or from PyTorch's cu13 wheels. `run`
# looks for them under /usr/local/cuda, /usr/lib, /usr/local/lib and /opt; if they are
# elsewhere, add their directories to LD_LIBRARY_PATH before `run`.
#
# `run` takes the binary from $SWEEP_BIN, else target/cuda/sweep.xz from `prepare`, else
# target/release/sweep. Time limits per part, in seconds: GPU_SECS (240), GPU512_SECS (90),
# CPU_SECS (150). It needs nvidia-smi, and python3 for the summary.
set -u
cmd=${1:-}
C=target/cuda

# The data subset and the spec, into $C.
data() {
    set -e
    local tgz=${CIFAR_TGZ:-} dir=${SWEEP_DATA_DIR:-data} src tmp=""
    if [ -z "$tgz" ] && [ -f "$dir/cifar-10-binary.tar.gz" ]; then
        tgz=$dir/cifar-10-binary.tar.gz
    fi
    if [ -n "$tgz" ]; then
        tmp=$(mktemp -d)
        tar -xzf "$tgz" -C "$tmp"
        src=$tmp/cifar-10-batches-bin
    elif [ -d "$dir/cifar-10-batches-bin" ]; then
        src=$dir/cifar-10-batches-bin
    else
        echo "no CIFAR-10 in $dir/: run \`cargo run --release -- data fetch cifar10\`," \
            "or set SWEEP_DATA_DIR or CIFAR_TGZ" >&2
        exit 2
    fi
    mkdir -p $C/data/cifar-10-batches-bin
    # 100 records of each class from every file: 1,000 per file, class-balanced (the
    # spec's train_subset draws 500 per class).
    python3 - "$src" $C/data/cifar-10-batches-bin <<'PY'
import sys
src, dst = sys.argv[1:]
for f in ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]:
    raw = open(f"{src}/{f}.bin", "rb").read()
    recs = [raw[i:i + 3073] for i in range(0, len(raw), 3073)]
    # The test file gives 200 per class: the GPU smoke profiles score 2,000 test images.
    k = 200 if f == "test_batch" else 100
    out = [r for c in range(10) for r in [r for r in recs if r[0] == c][:k]]
    assert len(out) == 10 * k, (f, len(out))
    open(f"{dst}/{f}.bin", "wb").write(b"".join(out))
PY
    cp "$src/batches.meta.txt" $C/data/cifar-10-batches-bin/
    [ -z "$tmp" ] || rm -rf "$tmp"
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
    echo "wrote $C/data and $C/gpu_check.yaml"
}

# `data`, then a `--features cuda` build without a GPU or CUDA toolkit, into $C/sweep.xz.
prepare() {
    set -e
    data
    local env=${CUDAENV:-$PWD/target/cuda-env} cap=${CUDA_COMPUTE_CAP:-90}
    local tdir=${CUDA_TARGET_DIR:-$PWD/target/cuda-build} src=${CUDA_SRC_DIR:-$PWD/target/cuda-src}
    [ -x "$env/bin/pip" ] || python3 -m venv "$env"
    "$env/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 \
        nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
    local cu13 stubs=$env/cudaroot/lib
    cu13=$(echo "$env"/lib/python3*/site-packages/nvidia/cu13)
    # cudarc's sources list the C functions to stand in for: download them first.
    cargo fetch --locked
    local cudarc
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | tail -1)
    mkdir -p "$stubs" "$env/stubsrc"
    # lib soname dir-in-cudarc: every C function cudarc's bindings declare, as an empty
    # stub, only for the linker.
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
    # The committed tree, so the binary is exactly HEAD whatever is being edited meanwhile.
    rm -rf "$src" && mkdir -p "$src" && git archive HEAD | tar -x -C "$src"
    (cd "$src" && PATH=$cu13/bin:$PATH CUDA_ROOT=$env/cudaroot CUDA_COMPUTE_CAP=$cap \
        CARGO_TARGET_DIR=$tdir CUDAFORGE_THREADS=$(nproc) \
        nice cargo build --release --locked --features cuda --bin sweep)
    # The bench binary too (bench/step.rs: the step and augmentation benches), for `bench`.
    (cd "$src" && PATH=$cu13/bin:$PATH CUDA_ROOT=$env/cudaroot CUDA_COMPUTE_CAP=$cap \
        CARGO_TARGET_DIR=$tdir CUDAFORGE_THREADS=$(nproc) \
        nice cargo build --release --locked --features cuda --bench step)
    # About 66 MB stripped (candle's kernels as PTX and sm_90a code): xz-compressed for
    # copying (10 MB); `run` unpacks it.
    strip -o "$tdir/sweep-stripped" "$tdir/release/sweep"
    xz -T0 -6 -c "$tdir/sweep-stripped" >$C/sweep.xz
    strip -o "$tdir/step-stripped" "$(ls -t "$tdir"/release/deps/step-* | grep -v '\.d$' | head -1)"
    xz -T0 -6 -c "$tdir/step-stripped" >$C/step.xz
    rm -f $C/sweep
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

# On the GPU machine: the CUDA libraries on LD_LIBRARY_PATH and the binary in $bin
# ($1: the log's name under $OUT).
setup() {
    [ -f $C/gpu_check.yaml ] || (data) || exit 2
    OUT=${OUT:-$C/out}
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/$1") 2>&1
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
    bin=${SWEEP_BIN:-}
    if [ -z "$bin" ] && [ -f $C/sweep.xz ]; then
        bin=${TMPDIR:-/tmp}/sweep-cuda-$$
        xz -dc $C/sweep.xz >$bin 2>/dev/null || python3 -c 'import lzma, shutil, sys
shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' $C/sweep.xz $bin
        chmod +x $bin
    fi
    [ -n "$bin" ] || bin=target/release/sweep
    if [ ! -x "$bin" ]; then
        echo "no sweep binary: run \`bash bench/gpu_check.sh prepare\` or" \
            "\`cargo build --release --features cuda\`, or set SWEEP_BIN" >&2
        exit 2
    fi
    echo "binary: $bin"
    ldd $bin | grep -E 'not found|cuda|cublas|cudnn|curand|nvrtc|stdc'
}

# The check itself, on the GPU machine.
run_check() {
    setup gpu_check.log
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

# The GPU measurements (bench/gpu_bench.sh says what and how to run them).
gpu_bench() {
    setup bench.log
    local step=${STEP_BIN:-}
    if [ -z "$step" ] && [ -f $C/step.xz ]; then
        step=${TMPDIR:-/tmp}/step-cuda-$$
        xz -dc $C/step.xz >$step 2>/dev/null || python3 -c 'import lzma, shutil, sys
shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' $C/step.xz $step
        chmod +x $step
    fi
    export SWEEP_DATA_DIR=$C/data
    local w t0 py=${PYTHON:-python3}
    w=$(mktemp -d)
    echo "== GPUs: $(nvidia-smi -L | wc -l) ($(nvidia-smi -L | tr '\n' ' '))"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 >"$OUT/smi_bench.csv" 2>&1 &
    local smi=$!
    echo "== augment_pairs --profile gpu_smoke (float32, host augmentation)"
    t0=$SECONDS
    timeout -k 5 ${SMOKE_SECS:-300} $bin --db "$w/smoke.db" --runs-dir "$w/runs" run \
        sweeps/augment_pairs.yaml --profile gpu_smoke --devices cuda:0
    echo "gpu_smoke: rc=$? wall=$((SECONDS - t0))s"
    timeout 30 $bin --db "$w/smoke.db" status augment_pairs
    summary "$w/smoke.db" | grep -E '^(pretrain|eval)|img/s'
    if [ -n "$step" ] && [ -x "$step" ]; then
        echo "== augmentation: device pipeline on cuda:0, host loader on $(nproc) threads, torchvision"
        PYTHON=$py timeout -k 5 120 $step augment --device cuda:0 --images 8192 --batch 512
        echo "== ResNet-18 step at N = 512 (cifar stem; images_per_s counts views, 2 per pair)"
        for p in f32 tf32 bf16; do
            timeout -k 5 120 $step step --arch resnet18 --n 512 --kernels candle --device cuda:0 \
                --precision $p --warmup 3 --steps 10 2>&1 | grep -E 'RESULT|phases|rror'
        done
    else
        echo "no bench binary: \`prepare\` builds $C/step.xz, or set STEP_BIN"
    fi
    if $py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        echo "== PyTorch eager, same step: f32, then autocast bf16 + channels_last"
        timeout -k 5 120 $py bench/step_torch.py step --arch resnet18 --n 512 --device cuda \
            --warmup 3 --steps 10 | grep RESULT
        timeout -k 5 120 $py bench/step_torch.py step --arch resnet18 --n 512 --device cuda \
            --amp bf16 --channels-last --warmup 3 --steps 10 | grep RESULT
    else
        echo "no PyTorch with CUDA here ($py): the PyTorch column is missing"
    fi
    echo "== augment_pairs --profile gpu_smoke, bf16 with device augmentation (other run ids)"
    t0=$SECONDS
    timeout -k 5 ${SMOKE_BF16_SECS:-240} $bin --db "$w/smoke.db" --runs-dir "$w/runs" run \
        sweeps/augment_pairs.yaml --profile gpu_smoke --devices cuda:0 \
        --set precision=bf16 --set augment.on=device
    echo "gpu_smoke bf16+device: rc=$? wall=$((SECONDS - t0))s"
    summary "$w/smoke.db" | grep -E '^(pretrain|eval)|img/s'
    kill $smi 2>/dev/null
    echo "== done $(date -u)"
}

# One sample of GPU memory in use (MiB) every 200 ms into $1 while the rest of the line runs.
with_mem() {
    local out=$1 smi rc
    shift
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$out" 2>/dev/null &
    smi=$!
    "$@"
    rc=$?
    kill $smi 2>/dev/null
    wait $smi 2>/dev/null
    return $rc
}

# The verdict on the cuDNN ops (src/ml/cuda), in one go on the GPU machine, under 8 minutes:
# the device's self-check per op; pairs/s and peak GPU memory of a training step
# (bench/step.rs: ConvNet and ResNet-18 with the CIFAR stem, N = 256 and 512, f32 / tf32 /
# bf16, cuDNN ops beside candle's) and PyTorch eager's (bench/step_torch.py: fp32, and
# autocast bf16 + channels_last) in the same run; and the loss after 200 SGD steps of the
# same model on the same synthetic images on the CPU and on CUDA through either path.
# Peak memory is nvidia-smi's largest reading during the run (CUDA context included).
verdict() {
    setup verdict.log
    local step=${STEP_BIN:-} py=${PYTHON:-python3} mem=${TMPDIR:-/tmp}/verdict-mem-$$ t0=$SECONDS
    if [ -z "$step" ] && [ -f $C/step.xz ]; then
        step=${TMPDIR:-/tmp}/step-cuda-$$
        xz -dc $C/step.xz >$step 2>/dev/null || python3 -c 'import lzma, shutil, sys
shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' $C/step.xz $step
        chmod +x $step
    fi
    [ -x "$step" ] || { echo "no bench binary: \`prepare\` builds $C/step.xz, or set STEP_BIN" >&2; exit 2; }
    echo "== self-check of the cuDNN ops against candle's (cuda:0)"
    timeout -k 5 120 $step step --arch convnet --n 8 --device cuda:0 --conv-impl cudnn \
        --warmup 0 --steps 1 2>&1 | grep -v '^phases'
    # label, then the command: one table row (pairs/s are images_per_s / 2).
    row() {
        local label=$1 line peak
        shift
        line=$(with_mem "$mem" timeout -k 5 ${VERDICT_RUN_SECS:-60} "$@" 2>&1 | grep -E '^RESULT|rror' | tail -1)
        peak=$(sort -n "$mem" 2>/dev/null | tail -1)
        python3 - "$label" "$line" "${peak:-?}" <<'PY'
import re, sys
label, line, peak = sys.argv[1:]
m = re.search(r"images_per_s=([0-9.]+)", line)
pairs = f"{float(m.group(1)) / 2:.0f}" if m else "FAILED: " + line[-120:]
peak = f"{int(peak) / 1024:.1f}" if peak.isdigit() else peak
print(f"| {label:38} | {pairs:>8} | {peak:>8} |")
PY
    }
    echo
    echo "| step (cuda:0)                          |  pairs/s | peak GiB |"
    echo "|----------------------------------------|----------|----------|"
    local arch n p impl
    for arch in convnet resnet18; do
        for n in 256 512; do
            for p in f32 tf32 bf16; do
                for impl in cudnn candle; do
                    row "$arch N=$n $p $impl" $step step --arch $arch --n $n --kernels candle \
                        --device cuda:0 --precision $p --conv-impl $impl --warmup 2 --steps 8
                done
            done
            if $py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
                row "$arch N=$n PyTorch eager fp32" $py bench/step_torch.py step --arch $arch --n $n \
                    --device cuda --warmup 2 --steps 8
                row "$arch N=$n PyTorch bf16 channels_last" $py bench/step_torch.py step --arch $arch \
                    --n $n --device cuda --amp bf16 --channels-last --warmup 2 --steps 8
            else
                echo "| $arch N=$n PyTorch                      |  no torch with CUDA ($py) |"
            fi
        done
    done
    echo
    echo "== loss after 200 SGD steps (ConvNet, N = 64, same init and images; f32)"
    local last
    for run in "cpu fast --device cpu --kernels fast" "cuda cudnn --device cuda:0 --conv-impl cudnn" \
        "cuda candle --device cuda:0 --conv-impl candle"; do
        set -- $run
        last=$(timeout -k 5 120 $step step --arch convnet --n 64 --warmup 0 --steps 200 "${@:3}" 2>&1 |
            grep -oE 'last_loss=[0-9.eE+-]+|rror.*' | tail -1)
        echo "$1 ($2): ${last:-no result}"
    done
    rm -f "$mem"
    echo "== verdict done in $((SECONDS - t0)) s, $(date -u)"
}

case $cmd in
data) data ;;
prepare) prepare ;;
run) run_check ;;
bench) gpu_bench ;;
verdict) verdict ;;
*)
    echo "usage: bash bench/gpu_check.sh data|prepare|run|bench|verdict (the comments at its top say more)" >&2
    exit 2
    ;;
esac
