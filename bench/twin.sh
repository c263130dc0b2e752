#!/usr/bin/env bash
# The PyTorch twin: the same small SimCLR pretrain + linear evaluation on both sides
# (bench/twin.yaml for ours, bench/twin_torch.py for PyTorch), several seeds, trained and
# random-weights controls (epochs: 0), then the loss curves and top-1 side by side
# (bench/twin_report.py).
#
# Usage: bench/twin.sh DATA_DIR [OUT_DIR]
#   DATA_DIR  holds cifar-10-batches-bin/ or cifar-10-binary.tar.gz (`sweep data fetch cifar10`)
#   OUT_DIR   stores, checkpoints, logs (default target/twin); rerunning skips finished runs
# Environment: PYTHON (with torch, torchvision, numpy; default python3), SEEDS (default
# "0 1 2"), INITS (our schemes, default "pytorch kaiming_normal official"; empty: none),
# OUR_VIEWS=1 (also train the PyTorch side on our pipeline's views instead of
# torchvision's: bench/twin_views.rs dumps them per epoch to OUT_DIR/views_sSEED, then
# twin_torch.py --views-from; the report adds a "PyTorch our-aug" side).
#
# On a 2-core CPU one pretrain takes 3-6 minutes per side; the two sides run at once.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: bench/twin.sh DATA_DIR [OUT_DIR]}
OUT=${2:-target/twin}
PY=${PYTHON:-python3}
SEEDS=${SEEDS:-"0 1 2"}
INITS=${INITS-"pytorch kaiming_normal official"}
OUR_VIEWS=${OUR_VIEWS:-0}
mkdir -p "$OUT"
cargo build --release --quiet
if [ "$OUR_VIEWS" = 1 ]; then
    cargo build --release --quiet --example twin_views
fi
seed_list="[$(echo $SEEDS | tr ' ' ',')]"

ours() {
    for init in $INITS; do
        target/release/sweep --quiet --db "$OUT/ours_$init.db" --data-dir "$DATA" \
            --runs-dir "$OUT/runs" run bench/twin.yaml --workers 1 \
            --set "init=$init" --set "seeds=$seed_list"
    done
}

torch_side() {
    for s in $SEEDS; do
        for e in 8 0; do
            f="$OUT/torch_e${e}_s$s.json"
            if [ ! -s "$f" ]; then
                "$PY" bench/twin_torch.py --data-dir "$DATA" --seed "$s" --epochs "$e" > "$f.tmp"
                mv "$f.tmp" "$f"
            fi
        done
        f="$OUT/torch_ourviews_e8_s$s.json"
        if [ "$OUR_VIEWS" = 1 ] && [ ! -s "$f" ]; then
            v="$OUT/views_s$s"
            mkdir -p "$v"
            "$PY" bench/twin_torch.py --data-dir "$DATA" --seed "$s" --write-subset "$v/want.txt"
            target/release/examples/twin_views --data-dir "$DATA" --subset "$v/want.txt" \
                --seed "$s" --epochs 8 --out "$v"
            "$PY" bench/twin_torch.py --data-dir "$DATA" --seed "$s" --epochs 8 \
                --views-from "$v" > "$f.tmp"
            mv "$f.tmp" "$f"
            rm -f "$v"/views_e*.npy  # 16 MB an epoch; rerun to regenerate
        fi
    done
}

ours > "$OUT/ours.log" 2>&1 &
ours_pid=$!
torch_side > "$OUT/torch.log" 2>&1 &
torch_pid=$!
wait "$ours_pid"
wait "$torch_pid"
"$PY" bench/twin_report.py "$OUT"
