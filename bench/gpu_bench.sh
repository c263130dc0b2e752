#!/usr/bin/env bash
# The GPU measurements of `sweep` in one go (end-to-end speed, augmentation throughput,
# training step per precision beside PyTorch), on a machine with a GPU; builds nothing.
#
# Before, on any machine with the repository (no GPU needed; about 15 minutes on 2 cores):
#   bash bench/gpu_check.sh prepare     # target/cuda/: sweep.xz, step.xz (CUDA builds of
#                                       # the committed tree), the CIFAR-10 subset, the spec
# Then on the GPU machine, with target/cuda/ copied beside this checkout:
#   bash bench/gpu_bench.sh             # log in target/cuda/out/bench.log
#
# It prints:
# 1. the GPUs it sees (one worker per GPU with --devices cuda:0,cuda:1,... needs several);
# 2. `sweep run sweeps/augment_pairs.yaml --profile gpu_smoke --devices cuda:0` (float32,
#    host augmentation) end to end: wall time, stages, images/s per run;
# 3. augmented views/s: the device pipeline (ml::augment_device) on cuda:0, the host
#    loader on every core, torchvision on one thread (with $PYTHON or python3), beside
#    the step's demand at N = 512;
# 4. ResNet-18 (cifar stem) training steps at N = 512 in f32, tf32 and bf16 (ours), and
#    PyTorch eager f32 and autocast-bf16 + channels_last when torch with CUDA is there:
#    ours bf16 / PyTorch bf16 is the ratio to watch (target >= 1.0);
# 5. the same gpu_smoke sweep with --set precision=bf16 --set augment.on=device.
# Time limits (seconds): SMOKE_SECS (300), SMOKE_BF16_SECS (240); about 10 minutes in all.
# Libraries and binaries: as bench/gpu_check.sh `run` (SWEEP_BIN, STEP_BIN override).
set -u
cd "$(dirname "$0")/.."
exec bash bench/gpu_check.sh bench
