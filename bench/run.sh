#!/usr/bin/env bash
# One SimCLR training step (forward, NT-Xent, backward, SGD) for the ConvNet and ResNet-18
# (CIFAR stem) at N = 64 and 256 pairs, with candle's own ops ("candle"), this crate's fast
# CPU kernels ("fast") and PyTorch on the same machine, plus augmentation throughput. Each
# config runs in its own process (peak memory = its max RSS).
# Usage: bench/run.sh [quick]   (quick: N = 64 only). On demand, not in CI.
# REPS (default 3): runs of ours and of PyTorch per config, interleaved so that both see
# the same machine load; the table quotes medians. candle's own ops run once (minutes each).
#
# PyTorch side: the Python interpreter is $PYTHON if set, else .venv-bench/bin/python in the
# repository root, else a `python3` on the PATH; it needs torch and torchvision. Create the
# environment once with (the index URL selects PyTorch's CPU-only wheels, which is all the
# bench needs):
#   python3 -m venv .venv-bench
#   .venv-bench/bin/pip install torch torchvision
set -euo pipefail
cd "$(dirname "$0")/.."
has_torch() { "$1" -c 'import torch, torchvision' >/dev/null 2>&1; }
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
  has_torch "$PY" || { echo "PYTHON=$PY cannot import torch and torchvision" >&2; exit 2; }
elif [ -x .venv-bench/bin/python ] && has_torch .venv-bench/bin/python; then
  PY=.venv-bench/bin/python
elif command -v python3 >/dev/null && has_torch python3; then
  PY=python3
else
  cat >&2 <<'MSG'
bench/run.sh needs a Python with PyTorch for the baseline column. Create one in the
repository root, then run bench/run.sh again:

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch torchvision

or point PYTHON at an interpreter that can `import torch, torchvision`.
MSG
  exit 2
fi
# STEP_BIN: an already built bench binary (skips the build).
BIN=${STEP_BIN:-}
[ -n "$BIN" ] || BIN=$(cargo bench --bench step --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*step-[^"]*\)".*/\1/p' | tail -1)
[ -x "$BIN" ] || { echo "could not build the step bench" >&2; exit 1; }
NS="64 256"; [ "${1:-}" = quick ] && NS=64
OUT=$(mktemp)
steps_for() { # warmup and timed steps per (arch, n, impl): enough to be stable, short for slow ones
  case "$1/$3" in
    convnet/*) echo "--warmup 2 --steps 20" ;;
    resnet18/candle) echo "--warmup 0 --steps 1" ;;
    *) echo "--warmup 1 --steps 2" ;;
  esac
}
REPS=${REPS:-3}
for arch in convnet resnet18; do
  for n in $NS; do
    "$BIN" step --arch $arch --n $n --kernels candle $(steps_for $arch $n candle) | grep RESULT | tee -a "$OUT"
    for _ in $(seq "$REPS"); do
      "$BIN" step --arch $arch --n $n --kernels fast $(steps_for $arch $n fast) | grep RESULT | tee -a "$OUT"
      "$PY" bench/step_torch.py step --arch $arch --n $n $(steps_for $arch $n torch) | grep RESULT | tee -a "$OUT"
    done
  done
done
PYTHON="$PY" "$BIN" augment | grep RESULT | tee -a "$OUT"
echo
"$PY" - "$OUT" <<'PYEOF'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    if not line.startswith("RESULT step"):
        continue
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    runs.setdefault((kv["arch"], kv["n"], kv["kernels"]), []).append(
        (float(kv["images_per_s"]), float(kv["maxrss_mib"])))
# Medians over the repeated runs, per column.
rows = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
        for k, v in runs.items()}
print()
print(f"{'config':<14}{'candle img/s':>13}{'fast img/s':>11}{'torch img/s':>12}{'fast/candle':>12}{'fast/torch':>11}"
      f"{'candle MiB':>11}{'fast MiB':>9}{'torch MiB':>10}{'mem fast/torch':>15}")
for (arch, n) in sorted({(a, n) for a, n, _ in rows}, key=lambda t: (t[0], int(t[1]))):
    c, f, t = (rows.get((arch, n, k), (float("nan"),) * 2) for k in ("candle", "fast", "torch"))
    print(f"{arch + ' N=' + n:<14}{c[0]:>13.1f}{f[0]:>11.1f}{t[0]:>12.1f}{f[0] / c[0]:>12.2f}{f[0] / t[0]:>11.2f}"
          f"{c[1]:>11.0f}{f[1]:>9.0f}{t[1]:>10.0f}{f[1] / t[1]:>15.2f}")
print("images = views (2N per step); memory = max RSS of the process running that config")
reps = sorted({len(v) for (_, _, k), v in runs.items() if k != "candle"})
print(f"fast and torch: median of {'/'.join(map(str, reps))} interleaved runs; candle: one run")
for (arch, n) in sorted({(a, n) for a, n, _ in runs}, key=lambda t: (t[0], int(t[1]))):
    f, t = runs.get((arch, n, "fast"), []), runs.get((arch, n, "torch"), [])
    print(f"  {arch} N={n}: fast/torch per run " +
          " ".join(f"{a[0] / b[0]:.2f}" for a, b in zip(f, t)))
PYEOF
rm -f "$OUT"
