"""Prints the twin's numbers side by side (bench/twin.sh): per-epoch pretraining loss of
PyTorch and of each of our initialisation schemes, per seed, then linear top-1 and kNN
top-1 of the trained encoders and of their random-weights controls (epochs: 0), with medians.
With OUR_VIEWS=1, "PyTorch our-aug" is PyTorch trained on our pipeline's views; its
random-weights control is PyTorch's (an untrained encoder sees no augmentation).

Usage: twin_report.py OUT_DIR   (reads OUT_DIR/ours*.db and OUT_DIR/torch_*.json)
"""

import glob
import json
import os
import sqlite3
import statistics
import sys


def ours(out):
    """{(init, epochs, seed): {"loss": [...], "linear": x, "knn": y}} from our stores."""
    runs = {}
    for db in sorted(glob.glob(os.path.join(out, "ours*.db"))):
        c = sqlite3.connect(db)
        pre = {}
        for rid, cfg in c.execute("select id, config from runs where stage = 'pretrain'"):
            cfg = json.loads(cfg)
            key = (cfg["init"], cfg["epochs"], cfg["seed"])
            loss = [v for _, v in c.execute(
                "select step, value from metrics where run_id = ? and name = 'epoch/loss' "
                "order by step", (rid,))]
            pre[rid] = key
            runs[key] = {"loss": loss}
        for parent, cfg, top1 in c.execute(
            "select r.parent_id, r.config, m.value from runs r join metrics m "
            "on m.run_id = r.id and m.name = 'eval/top1' where r.stage = 'eval'"
        ):
            runs[pre[parent]][json.loads(cfg)["kind"]] = top1
    return runs


def torch_side(out):
    runs = {}
    for path in glob.glob(os.path.join(out, "torch_*.json")):
        with open(path) as f:
            lines = [l for l in f if l.startswith("{")]
        if lines:
            r = json.loads(lines[-1])
            side = "torch_ourviews" if r.get("views") == "ours" else "torch"
            runs[(side, r["epochs"], r["seed"])] = {
                "loss": r["loss"], "linear": r["linear_top1"], "knn": r["knn_top1"]}
    return runs


def pct(x):
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def main():
    out = sys.argv[1]
    runs = {**ours(out), **torch_side(out)}
    sides = [i for i in ("torch", "torch_ourviews", "pytorch", "kaiming_normal", "official")
             if any(k[0] == i for k in runs)]
    names = {"torch": "PyTorch", "torch_ourviews": "PyTorch our-aug", "pytorch": "ours pytorch",
             "kaiming_normal": "ours kaiming_n", "official": "ours official"}
    epochs = max((k[1] for k in runs), default=0)
    seeds = sorted({k[2] for k in runs})
    print(f"## Pretraining loss per epoch (epoch/loss, mean over the epoch's steps)\n")
    for s in seeds:
        print(f"seed {s}")
        print("epoch  " + "  ".join(f"{names[x]:>15}" for x in sides))
        for e in range(epochs):
            row = []
            for x in sides:
                l = runs.get((x, epochs, s), {}).get("loss", [])
                row.append(f"{l[e]:15.4f}" if e < len(l) else f"{'-':>15}")
            print(f"{e + 1:5}  " + "  ".join(row))
        print()
    print("## Linear top-1 / kNN top-1 on h (trained | random-weights control | gain)\n")
    print(f"{'side':15} {'seed':>6}  {'linear':>7} {'kNN':>7} | {'linear':>7} {'kNN':>7} | "
          f"{'linear':>7} {'kNN':>7}")
    for x in sides:
        acc = {m: ([], [], []) for m in ("linear", "knn")}
        for s in seeds:
            t = runs.get((x, epochs, s), {})
            r = runs.get(("torch" if x == "torch_ourviews" else x, 0, s), {})
            cells = []
            for part in (t, r):
                cells += [part.get("linear"), part.get("knn")]
            gains = [None if a is None or b is None else a - b
                     for a, b in zip(cells[:2], cells[2:])]
            for m, i in (("linear", 0), ("knn", 1)):
                for lst, v in zip(acc[m], (cells[i], cells[i + 2], gains[i])):
                    if v is not None:
                        lst.append(v)
            print(f"{names[x]:15} {s:>6}  {pct(cells[0])} {pct(cells[1])} | {pct(cells[2])} "
                  f"{pct(cells[3])} | {pct(gains[0])} {pct(gains[1])}")
        med = lambda l: statistics.median(l) if l else None  # noqa: E731
        print(f"{names[x]:15} {'median':>6}  {pct(med(acc['linear'][0]))} {pct(med(acc['knn'][0]))} | "
              f"{pct(med(acc['linear'][1]))} {pct(med(acc['knn'][1]))} | "
              f"{pct(med(acc['linear'][2]))} {pct(med(acc['knn'][2]))}")
    final = {x: [runs[(x, epochs, s)]["loss"][-1] for s in seeds
                 if len(runs.get((x, epochs, s), {}).get("loss", [])) == epochs] for x in sides}
    print("\n## Final-epoch loss, median over seeds\n")
    for x in sides:
        if final[x]:
            print(f"{names[x]:15} {statistics.median(final[x]):.4f}  ({len(final[x])} seeds)")


if __name__ == "__main__":
    main()
