"""torchvision's SimCLR augmentation throughput, the column bench/step.rs `augment` prints
beside ours: two views per image of 32x32 uint8 images through the pipeline the PyTorch
twin uses (bench/twin_torch.py: RandomResizedCrop, flip, ColorJitter p=0.8, grayscale
p=0.2, colour strength 0.5), then to float, one process and one thread (as one DataLoader
worker runs it). Prints `RESULT torchvision views_per_s=...`.

Usage: python bench/augment_torch.py [--images 2048]
"""

import argparse
import time

import torch
from torchvision.transforms import v2 as T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2048)
    a = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (a.images, 3, 32, 32), dtype=torch.uint8, generator=g)
    s = 0.5
    aug = T.Compose(
        [
            T.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToDtype(torch.float32, scale=True),
        ]
    )
    for i in range(64):  # warm-up
        aug(x[i])
    t0 = time.perf_counter()
    sink = 0.0
    for i in range(a.images):
        sink += float(aug(x[i])[0, 0, 0]) + float(aug(x[i])[0, 0, 0])
    vps = 2 * a.images / (time.perf_counter() - t0)
    print(f"RESULT torchvision views_per_s={vps:.0f} threads=1 (sink {int(sink) % 7})")


if __name__ == "__main__":
    main()
