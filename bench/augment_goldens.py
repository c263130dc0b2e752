"""Golden outputs of torchvision's augmentation ops for src/ml/augment.rs.

torchvision.transforms.v2.functional on uint8 CHW tensors (what bench/twin_torch.py feeds
its RandomResizedCrop / ColorJitter / RandomGrayscale pipeline), with fixed parameters on
small fixed images, plus the statistics of RandomResizedCrop.get_params over many draws.
It writes src/ml/augment/augment_goldens.json, which the Rust tests of
src/ml/augment_torchvision.rs compare our ops against (they never need Python).

    python bench/augment_goldens.py         # rewrites src/ml/augment/augment_goldens.json

Images: `pattern(h, w)` below, HWC u8, the same formula as the Rust tests' `pattern`: a
hash of the byte index, with every 7th pixel (in row-major order) set grey, so that the
colour ops meet saturated, dark, bright and grey pixels. Outputs are stored HWC as hex.

Resize on uint8 goes through torch's native uint8 antialiased bilinear kernel on AVX2 /
AVX-512 / ARM CPUs, through float32 + round elsewhere; the JSON records which one ran.
"""

import json
import os
import platform

import numpy as np
import torch
import torchvision
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF


def pattern(h, w):
    """HWC u8: byte k = (k * 2654435761 mod 2^32) >> 24; pixels p with p % 7 == 0 grey."""
    k = np.arange(h * w * 3, dtype=np.uint64)
    v = ((k * np.uint64(2654435761)) % np.uint64(2**32)) >> np.uint64(24)
    img = v.astype(np.uint8).reshape(h * w, 3)
    grey = np.arange(h * w) % 7 == 0
    img[grey] = img[grey, :1]
    return img.reshape(h, w, 3)


def chw(img):
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def hex_hwc(t):
    return t.permute(1, 2, 0).contiguous().numpy().tobytes().hex()


def main():
    out = {
        "generated_by": "bench/augment_goldens.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "api": "torchvision.transforms.v2.functional on uint8 CHW tensors",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }

    # resized_crop: boxes of a 48 x 40 image to 32 x 32, bilinear, antialias=True (as
    # RandomResizedCrop calls it); upscaling, identity, mixed and downscaling boxes.
    src = pattern(48, 40)
    crops = []
    for top, left, height, width, flip in [
        (3, 5, 16, 16, False),  # 2x up
        (10, 2, 24, 18, False),  # up, anisotropic
        (7, 4, 24, 18, True),  # the same box, then hflip
        (0, 8, 32, 32, False),  # same size: torchvision returns the crop itself
        (5, 1, 10, 30, False),  # up on both axes, very wide
        (2, 0, 40, 32, False),  # down along y only
        (0, 0, 48, 40, False),  # down on both axes (the whole image)
    ]:
        t = TF.resized_crop(chw(src), top, left, height, width, [32, 32],
                            interpolation=T.InterpolationMode.BILINEAR, antialias=True)
        if flip:
            t = TF.horizontal_flip(t)
        crops.append({"top": top, "left": left, "height": height, "width": width,
                      "flip": flip, "out": hex_hwc(t)})
    out["resized_crop"] = {"src_h": 48, "src_w": 40, "out_h": 32, "out_w": 32, "cases": crops}

    # hflip, the colour adjustments and grayscale on an 8 x 8 image.
    img8 = chw(pattern(8, 8))
    out["hflip"] = hex_hwc(TF.horizontal_flip(img8))
    color = []
    for op, fn, factors in [
        ("brightness", TF.adjust_brightness, [0.0, 0.6, 1.0, 1.37]),
        ("contrast", TF.adjust_contrast, [0.0, 0.6, 1.37]),
        ("saturation", TF.adjust_saturation, [0.0, 0.6, 1.37]),
        ("hue", TF.adjust_hue, [-0.5, -0.1, 0.0, 0.1, 1.0 / 3.0]),
    ]:
        for f in factors:
            color.append({"op": op, "factor": f, "out": hex_hwc(fn(img8, f))})
    out["color"] = color
    # A whole ColorJitter draw with fixed factors and order (ColorJitter.forward's loop).
    chains = []
    for order, (b, c, s, h) in [
        ([0, 1, 2, 3], (1.3, 0.7, 1.2, 0.05)),
        ([3, 2, 1, 0], (0.7, 1.35, 0.65, -0.08)),
        ([2, 0, 3, 1], (1.1, 0.8, 1.4, 0.1)),
    ]:
        t = img8
        for k in order:
            t = [lambda x: TF.adjust_brightness(x, b), lambda x: TF.adjust_contrast(x, c),
                 lambda x: TF.adjust_saturation(x, s), lambda x: TF.adjust_hue(x, h)][k](t)
        chains.append({"order": order, "factors": [b, c, s, h], "out": hex_hwc(t)})
    out["jitter_chain"] = chains
    out["grayscale3"] = hex_hwc(TF.rgb_to_grayscale(img8, num_output_channels=3))

    # gaussian_blur with the kernel size we use at 32 x 32 (3, as for any side of 10-39 px;
    # a 16 x 16 image keeps the JSON small) and sigmas of U(0.1, 2.0).
    img16 = chw(pattern(16, 16))
    out["gaussian_blur"] = {
        "h": 16, "w": 16, "kernel_size": 3,
        "cases": [{"sigma": s, "out": hex_hwc(TF.gaussian_blur(img16, [3, 3], [s, s]))}
                  for s in (0.3, 1.0, 2.0)],
    }

    # RandomResizedCrop.get_params on 32 x 32, scale (0.08, 1), ratio (3/4, 4/3).
    torch.manual_seed(0)
    n = 200_000
    probe = torch.zeros(3, 32, 32, dtype=torch.uint8)
    area, aspect, cx, cy = [], [], [], []
    for _ in range(n):
        i, j, hh, ww = T.RandomResizedCrop.get_params(probe, [0.08, 1.0], [3 / 4, 4 / 3])
        area.append(hh * ww / 1024)
        aspect.append(ww / hh)
        cx.append((j + ww / 2) / 32)
        cy.append((i + hh / 2) / 32)
    qs = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    out["crop_params"] = {
        "h": 32, "w": 32, "scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3], "draws": n,
        "quantiles": qs,
        "area_fraction": [float(np.quantile(area, q)) for q in qs],
        "aspect": [float(np.quantile(aspect, q)) for q in qs],
        "area_mean": float(np.mean(area)),
        "aspect_mean": float(np.mean(aspect)),
        "full_image": float(np.mean(np.array(area) == 1.0)),
        "centre_x_mean": float(np.mean(cx)),
        "centre_x_std": float(np.std(cx)),
        "centre_y_std": float(np.std(cy)),
    }

    path = os.path.join(os.path.dirname(__file__), "..", "src", "ml", "augment", "augment_goldens.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
