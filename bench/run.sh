#!/usr/bin/env bash
# Issues 3 and 6: one SimCLR training step (forward, NT-Xent, backward, SGD) for the
# ConvNet and ResNet-18 (CIFAR stem) at N = 64 and 256 pairs, with candle's own ops
# ("before"), this crate's fast CPU kernels ("after") and PyTorch on the same machine, plus
# augmentation throughput. Each config runs in its own process (peak memory = its max RSS).
# Usage: bench/run.sh [quick]   (quick: N = 64 only). On demand, not in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/torchenv/bin/python}
# STEP_BIN: an already built bench binary (skips the build).
BIN=${STEP_BIN:-}
[ -n "$BIN" ] || BIN=$(cargo bench --bench step --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*step-[^"]*\)".*/\1/p' | tail -1)
[ -x "$BIN" ] || { echo "could not build the step bench" >&2; exit 1; }
NS="64 256"; [ "${1:-}" = quick ] && NS=64
OUT=$(mktemp)
steps_for() { # warmup and timed steps per (arch, n, impl): enough to be stable, short for slow ones
  case "$1/$3" in
    convnet/*) echo "--warmup 1 --steps 5" ;;
    resnet18/candle) echo "--warmup 0 --steps 1" ;;
    *) echo "--warmup 1 --steps 1" ;;
  esac
}
for arch in convnet resnet18; do
  for n in $NS; do
    for k in candle fast; do
      "$BIN" step --arch $arch --n $n --kernels $k $(steps_for $arch $n $k) | grep RESULT | tee -a "$OUT"
    done
    "$PY" bench/step_torch.py step --arch $arch --n $n $(steps_for $arch $n torch) | grep RESULT | tee -a "$OUT"
  done
done
"$BIN" augment | grep RESULT | tee -a "$OUT"
"$PY" bench/step_torch.py augment | grep RESULT | tee -a "$OUT"
echo
"$PY" - "$OUT" <<'PYEOF'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("RESULT step"):
        continue
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    rows[(kv["arch"], kv["n"], kv["kernels"])] = (float(kv["images_per_s"]), float(kv["maxrss_mib"]))
print()
print(f"{'config':<14}{'candle img/s':>13}{'fast img/s':>11}{'torch img/s':>12}{'fast/candle':>12}{'fast/torch':>11}"
      f"{'candle MiB':>11}{'fast MiB':>9}{'torch MiB':>10}{'mem fast/torch':>15}")
for (arch, n) in sorted({(a, n) for a, n, _ in rows}, key=lambda t: (t[0], int(t[1]))):
    c, f, t = (rows.get((arch, n, k), (float("nan"),) * 2) for k in ("candle", "fast", "torch"))
    print(f"{arch + ' N=' + n:<14}{c[0]:>13.1f}{f[0]:>11.1f}{t[0]:>12.1f}{f[0] / c[0]:>12.2f}{f[0] / t[0]:>11.2f}"
          f"{c[1]:>11.0f}{f[1]:>9.0f}{t[1]:>10.0f}{f[1] / t[1]:>15.2f}")
print("images = views (2N per step); memory = max RSS of the process running that config")
PYEOF
rm -f "$OUT"
