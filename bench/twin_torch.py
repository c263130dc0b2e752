"""The PyTorch side of the twin (bench/twin.sh): the recipe of bench/twin.yaml in plain
PyTorch + torchvision, so the two sides' loss curves and linear top-1 can be set side by side.

Same network, loss, optimizer, schedule, augmentations and evaluation as ours:
- encoder: 4 x (conv3x3 no bias, BN, ReLU), 32-64-128-256 channels, 2x2 average pool after
  blocks 1-3, global average pool -> h (our `convnet`, width 2);
- head: Linear(256, 256, no bias), BN, ReLU, Linear(256, 128, no bias) (`--output-bn` adds a
  BN with scale only after the last layer, like our `head.output_bn`);
- init: PyTorch's defaults (Conv2d / Linear: kaiming_uniform a=sqrt(5)), BN gamma 1 beta 0;
- NT-Xent, temperature 0.5, l2-normalised z, mean over the 2N anchors;
- SGD momentum 0.9 (no Nesterov), lr = base x B / 256, per-step cosine to 0, no warmup,
  weight decay on rank >= 2 parameters only (BN and bias excluded, as ours and the official
  LARS; `--decay-all` decays every parameter, torch.optim.SGD's default);
- augmentations on [0, 1] images, no mean/std normalisation: RandomResizedCrop(32,
  scale=(0.08, 1)), horizontal flip p=0.5, ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8,
  grayscale p=0.2 (colour strength 0.5);
- one forward of the 2N views (BatchNorm statistics over both views), drop-last batches from a class-balanced, seeded subset of the training split;
- evaluation on h (BN in eval mode) of class-balanced subsets: linear = standardised features,
  zero-initialised multinomial logistic regression, SGD momentum 0.9, per-step cosine from
  lr to 0, batch 256; kNN = cosine similarity, k = 200 nearest, votes exp(sim / 0.1).

Prints one JSON object: per-epoch mean loss, linear top-1, kNN top-1.

Our views instead of torchvision's (bench/twin.sh with OUR_VIEWS=1): `--write-subset FILE`
writes the seed's pretraining subset (training-split indices, one per line) and exits;
the example `twin_views` (bench/twin_views.rs) augments those images with our pipeline
(src/ml/augment.rs, bench/twin.yaml's `augment`) into DIR/views_e{epoch}.npy; then
`--views-from DIR` trains on those views, everything else equal (same subset, initial
weights, loss, optimizer and evaluation; the batch order after the first epoch is drawn
from torch's generator, which torchvision's own transforms also draw from, so it differs
in its draws but not in its distribution).
"""

import argparse
import json
import math
import os
import tarfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms import v2 as T

from step_torch import nt_xent  # the same NT-Xent as the step benchmark's twin


def load_cifar(data_dir):
    """CIFAR-10 binary: (train_x u8 [N,3,32,32], train_y, test_x, test_y)."""
    root = os.path.join(data_dir, "cifar-10-batches-bin")
    if not os.path.isdir(root):
        cache = "/tmp/twin_cifar"
        root = os.path.join(cache, "cifar-10-batches-bin")
        if not os.path.isdir(root):
            with tarfile.open(os.path.join(data_dir, "cifar-10-binary.tar.gz")) as t:
                t.extractall(cache)

    def read(names):
        raw = np.concatenate(
            [np.fromfile(os.path.join(root, n), dtype=np.uint8) for n in names]
        ).reshape(-1, 3073)
        return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)

    trx, trY = read([f"data_batch_{i}.bin" for i in range(1, 6)])
    tex, teY = read(["test_batch.bin"])
    return trx, trY, tex, teY


def balanced_subset(y, n, rng):
    """n indices, n/C per class, seeded."""
    classes = np.unique(y)
    per = n // len(classes)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per, replace=False) for c in classes])
    return np.sort(idx)


class Twin(nn.Module):
    def __init__(self, output_bn):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate([32, 64, 128, 256]):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            if i < 3:
                layers.append(nn.AvgPool2d(2))
            c_in = c
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.encoder = nn.Sequential(*layers)
        head = [
            nn.Linear(256, 256, bias=False),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Linear(256, 128, bias=False),
        ]
        if output_bn:
            bn = nn.BatchNorm1d(128, affine=True)
            bn.bias.requires_grad_(False)  # scale only (center=False)
            head.append(bn)
        self.head = nn.Sequential(*head)

    def forward(self, x):
        h = self.encoder(x)
        return h, self.head(h)


def augmenter(strength):
    s = strength
    return T.Compose(
        [
            T.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ]
    )


@torch.no_grad()
def features(model, x_u8, bs=500):
    model.eval()
    out = [
        model.encoder(torch.from_numpy(x_u8[i : i + bs]).float() / 255.0)
        for i in range(0, len(x_u8), bs)
    ]
    return torch.cat(out)


def linear_eval(xtr, ytr, xte, yte, epochs, lr, bs, seed):
    mean = xtr.mean(0, keepdim=True)
    std = ((xtr - mean) ** 2).mean(0, keepdim=True).add(1e-8).sqrt()
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    clf = nn.Linear(xtr.shape[1], 10)
    nn.init.zeros_(clf.weight)
    nn.init.zeros_(clf.bias)
    opt = torch.optim.SGD(clf.parameters(), lr=lr, momentum=0.9)
    n = len(ytr)
    spe = math.ceil(n / bs)
    total, step = max(spe * epochs, 1), 0
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(bs):
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(clf(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    with torch.no_grad():
        return (clf(xte).argmax(1) == yte).float().mean().item()


def knn_eval(xtr, ytr, xte, yte, k=200, tau=0.1):
    xtr, xte = F.normalize(xtr, dim=1), F.normalize(xte, dim=1)
    correct = 0
    for i in range(0, len(xte), 500):
        sim = xte[i : i + 500] @ xtr.t()
        w, j = sim.topk(min(k, len(ytr)), dim=1)
        votes = torch.zeros(len(w), 10).scatter_add_(1, ytr[j], (w / tau).exp())
        correct += (votes.argmax(1) == yte[i : i + 500]).sum().item()
    return correct / len(yte)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--subset", type=int, default=2560)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--decay-all", action="store_true")
    p.add_argument("--output-bn", action="store_true")
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--color-strength", type=float, default=0.5)
    p.add_argument("--eval-train", type=int, default=5000)
    p.add_argument("--eval-test", type=int, default=2000)
    p.add_argument("--eval-epochs", type=int, default=30)
    p.add_argument("--eval-lr", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write-subset", metavar="FILE",
                   help="write the pretraining subset's indices, one per line, and exit")
    p.add_argument("--views-from", metavar="DIR",
                   help="train on DIR/views_e{epoch}.npy (bench/twin_views.rs) instead of "
                        "torchvision's augmentations")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    trx, trY, tex, teY = load_cifar(a.data_dir)

    model = Twin(a.output_bn)
    decay = [q for q in model.parameters() if q.requires_grad and (a.decay_all or q.ndim > 1)]
    rest = [q for q in model.parameters() if q.requires_grad and not (a.decay_all or q.ndim > 1)]
    peak = a.lr * a.batch_size / 256
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": a.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=peak,
        momentum=0.9,
    )
    pre = balanced_subset(trY, a.subset, rng)
    if a.write_subset:
        np.savetxt(a.write_subset, pre, fmt="%d")
        return
    if a.views_from:
        ours = np.loadtxt(os.path.join(a.views_from, "subset.txt"), dtype=np.int64, ndmin=1)
        if not np.array_equal(ours, pre):
            raise SystemExit(f"{a.views_from}/subset.txt is not seed {a.seed}'s subset of "
                             f"{a.subset} images: rerun bench/twin_views.rs with "
                             f"--subset from --write-subset")
    x_all = torch.from_numpy(trx[pre])
    aug = augmenter(a.color_strength)
    spe = len(pre) // a.batch_size
    total, step, curve = spe * a.epochs, 0, []
    for epoch in range(a.epochs):
        model.train()
        t0, losses = time.time(), []
        order = torch.randperm(len(pre))
        if a.views_from:
            path = os.path.join(a.views_from, f"views_e{epoch}.npy")
            views = torch.from_numpy(np.load(path))  # (2, N, 3, H, W) u8, ours
            if views.shape[:2] != (2, len(pre)) or views.dtype != torch.uint8:
                raise SystemExit(f"{path}: want uint8 (2, {len(pre)}, 3, H, W), "
                                 f"got {views.dtype} {tuple(views.shape)}")
        for b in range(spe):
            batch = order[b * a.batch_size : (b + 1) * a.batch_size]
            if a.views_from:
                v1 = views[0][batch].float() / 255.0
                v2 = views[1][batch].float() / 255.0
            else:
                imgs = x_all[batch]
                v1 = torch.stack([aug(im) for im in imgs]).float() / 255.0
                v2 = torch.stack([aug(im) for im in imgs]).float() / 255.0
            for group in opt.param_groups:
                group["lr"] = peak * 0.5 * (1 + math.cos(math.pi * step / total))
            _, z = model(torch.cat([v1, v2]))  # one 2N batch: BN sees both views, as ours
            loss = nt_xent(z[: len(v1)], z[len(v1) :], a.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
        curve.append(float(np.mean(losses)))
        print(f"# seed {a.seed} epoch {epoch + 1}: loss {curve[-1]:.4f} {time.time() - t0:.1f}s",
              flush=True)

    tri = balanced_subset(trY, a.eval_train, rng)
    tei = balanced_subset(teY, a.eval_test, rng)
    ftr, fte = features(model, trx[tri]), features(model, tex[tei])
    ytr, yte = torch.from_numpy(trY[tri]), torch.from_numpy(teY[tei])
    lin = linear_eval(ftr, ytr, fte, yte, a.eval_epochs, a.eval_lr, 256, a.seed)
    knn = knn_eval(ftr, ytr, fte, yte)
    print(json.dumps({"seed": a.seed, "epochs": a.epochs,
                      "views": "ours" if a.views_from else "torchvision", "loss": curve,
                      "linear_top1": lin, "knn_top1": knn}))


if __name__ == "__main__":
    main()
