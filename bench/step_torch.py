"""PyTorch side of bench/step.rs: the same SimCLR step on the same machine.

  step_torch.py step --arch convnet|resnet18 --n 64 [--warmup 1] [--steps 2]
      [--device cpu|cuda] [--amp bf16] [--channels-last]
  step_torch.py augment [--images 2048]

`step`: forward on 2N views of 32x32, NT-Xent (tau 0.5, l2-normalised), backward,
SGD(momentum 0.9, weight decay 1e-4); ConvNet = 4 x (conv3x3-BN-ReLU) 16/32/64/128 with 2x2
avg-pool after blocks 1-3; ResNet-18 = torchvision's with the CIFAR stem (3x3 stride-1 conv,
no max-pool, no fc); head = Linear(no bias)-BN-ReLU-Linear(no bias) to 128, as the Rust
model. Prints `RESULT step ... images_per_s=.. maxrss_mib=..` (images are views; peak memory
is this process's max RSS). 2 threads, f32. On `--device cuda`: `--amp bf16` runs the step
under autocast to bfloat16 (f32 master weights, BatchNorm in f32: PyTorch's mixed
precision), `--channels-last` the NHWC memory format cuDNN prefers; each step ends with
`loss.item()`, which waits for the GPU.
`augment`: views/s of torchvision's SimCLR CIFAR pipeline (RandomResizedCrop(32, 0.08-1),
flip, ColorJitter(0.4,0.4,0.4,0.1) p=0.8, grayscale p=0.2) on PIL images, one process.
"""
import argparse
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(2)


def maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def convnet():
    layers, c_in = [], 3
    for i, c in enumerate([16, 32, 64, 128]):
        layers += [nn.Conv2d(c_in, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        if i < 3:
            layers.append(nn.AvgPool2d(2))
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), 128


def resnet18():
    import torchvision

    m = torchvision.models.resnet18()
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.fc = nn.Identity()
    return m, 512


def nt_xent(z1, z2, tau=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.t() / tau
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def step(a):
    enc, d = convnet() if a.arch == "convnet" else resnet18()
    head = nn.Sequential(nn.Linear(d, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(),
                         nn.Linear(d, 128, bias=False))
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = nn.Sequential(enc, head).train().to(a.device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    n = a.n
    g = torch.Generator().manual_seed(0)
    amp = a.amp == "bf16"
    t0 = time.perf_counter()
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            t0 = time.perf_counter()
        x = torch.rand(2 * n, 3, 32, 32, generator=g).to(a.device, memory_format=fmt)
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=amp):
            z = model(x)
        loss = nt_xent(z[:n].float(), z[n:].float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = loss.item()
    secs = time.perf_counter() - t0
    print(f"RESULT step arch={a.arch} n={n} kernels=torch device={a.device} amp={a.amp} "
          f"channels_last={int(a.channels_last)} "
          f"images_per_s={2 * n * a.steps / secs:.1f} maxrss_mib={maxrss_mib():.0f} "
          f"sec_per_step={secs / a.steps:.3f} last_loss={last:.6f}")


def augment(a):
    import numpy as np
    from PIL import Image
    import torchvision.transforms as T

    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            for _ in range(a.images)]
    tf = T.Compose([
        T.RandomResizedCrop(32, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
    ])
    t0 = time.perf_counter()
    for im in imgs:
        tf(im)
        tf(im)
    vps = 2 * len(imgs) / (time.perf_counter() - t0)
    print(f"RESULT augment torchvision_views_per_s={vps:.0f} (one process)")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["step", "augment"])
    p.add_argument("--arch", default="convnet", choices=["convnet", "resnet18"])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    a = p.parse_args()
    step(a) if a.mode == "step" else augment(a)
