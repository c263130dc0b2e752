//! Throughput bench of a SimCLR training step, run on demand, not in CI:
//!
//! ```text
//! cargo bench --bench step -- step --arch convnet|resnet18 --n 64 --kernels candle|fast|fast-unfused \
//!     [--warmup 1] [--steps 2] [--device cpu|cuda:0] [--precision f32|tf32|bf16] \
//!     [--conv-impl candle|cudnn|auto]
//! cargo bench --bench step -- augment [--images 2048] [--batch 512] [--threads N] \
//!     [--device cpu|cuda:0] [--step-pairs-per-s 201]
//! ```
//!
//! `--kernels fast-unfused` is the fast path with separate conv and BN ops instead of the
//! fused blocks, for A/B. `--conv-impl` is the run config's `conv_impl` on CUDA (default
//! `candle`, candle's ops; `cudnn` runs the device's self-check first and prints it).
//! `step` times one SimCLR training step (forward on 2N views of 32x32, NT-Xent with tau 0.5,
//! backward, SGD with momentum 0.9 and weight decay 1e-4) and prints one line
//! `RESULT step arch=.. n=.. kernels=.. images_per_s=.. maxrss_mib=..`; images are views
//! (2N per step). Peak memory is this process's max RSS, so run one config per process
//! (`bench/run.sh` does, and prints the table against PyTorch).
//! `augment` prints augmented views/s (SimCLR's default crop + colour, two views per
//! image, 32x32) of: the host pipeline on one thread (`augment_pair`) and through the
//! threaded loader (`view_batches`, `--threads`, default every core); the device pipeline
//! (`ml::augment::device`, batches of `--batch`, on `--device`, default the first GPU when
//! the build has CUDA and one is there, else the CPU); torchvision's pipeline, one thread
//! (`bench/step_torch.py augment`, with `$PYTHON` or `python3` when it has torchvision);
//! and beside them the training step's demand at N = 512: 2 x `--step-pairs-per-s`
//! views/s (default 201 pairs/s: ResNet-18, float32, on an H200, bench/gpu_check.sh).

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use simclr_sweep::ml::augment::device::DeviceImages;
use simclr_sweep::ml::config::{
    Arch, AugmentConfig, ConvImpl, EncoderConfig, HeadConfig, LossConfig, OptimizerConfig,
    OptimizerKind, Stem,
};
use simclr_sweep::ml::data::{view_batches, EpochViews, ImageSet, Views};
use simclr_sweep::ml::kernels::{set_fused_blocks, set_kernels, Kernels};
use simclr_sweep::ml::model::init::build_model;
use simclr_sweep::ml::training::loss::contrastive_loss;
use simclr_sweep::ml::training::optim::Optimizer;

fn max_rss_mib() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as f64 / 1024.0
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn argstr(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// Deterministic pseudo-images in [0, 1).
fn images(n: usize, seed: u64) -> Vec<f32> {
    (0..(n * 3 * 32 * 32) as u64)
        .map(|i| {
            let z = (i + 1)
                .wrapping_mul(6364136223846793005)
                .wrapping_add(seed.wrapping_mul(1442695040888963407));
            (z >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn step_bench(args: &[String]) -> anyhow::Result<()> {
    let arch_s = argstr(args, "--arch", "convnet");
    let arch = match arch_s.as_str() {
        "convnet" => Arch::Convnet,
        "resnet18" => Arch::Resnet18,
        other => anyhow::bail!("unknown --arch {other}"),
    };
    let n: usize = arg(args, "--n", 64);
    let warmup: usize = arg(args, "--warmup", 1);
    let steps: usize = arg(args, "--steps", 2);
    let kern_s = argstr(args, "--kernels", "fast");
    // fast-unfused: separate conv / BN ops instead of the fused blocks, for A/B in one run.
    set_fused_blocks(kern_s != "fast-unfused");
    set_kernels(match kern_s.as_str() {
        "candle" => Kernels::Candle,
        "fast" | "fast-unfused" => Kernels::Fast,
        other => anyhow::bail!("unknown --kernels {other}"),
    });
    // "candle" is stock candle; "fast" is what `sweep` runs: our kernels and its heap
    // setting (src/ml/heap.rs).
    if kern_s != "candle" {
        simclr_sweep::ml::heap::retain_freed_memory();
    }
    let dev = match argstr(args, "--device", "cpu").as_str() {
        "cpu" => Device::Cpu,
        d => Device::new_cuda(d.strip_prefix("cuda:").unwrap_or(d).parse()?)?,
    };
    // The run config's `precision` as the trainer applies it (ml::training::trainer): tf32 is
    // candle's cuBLAS switch, bf16 casts the views (the encoder casts its f32 weights).
    let precision = argstr(args, "--precision", "f32");
    candle_core::cuda::set_gemm_reduced_precision_f32(precision == "tf32");
    let dtype = match precision.as_str() {
        "f32" | "tf32" => DType::F32,
        "bf16" if dev.is_cuda() => DType::BF16,
        "bf16" => anyhow::bail!(
            "--precision bf16 needs --device cuda:N (candle's CPU has no bf16 matmul)"
        ),
        other => anyhow::bail!("unknown --precision {other}"),
    };
    let conv_impl = match argstr(args, "--conv-impl", "candle").as_str() {
        "auto" => ConvImpl::Auto,
        "cudnn" => ConvImpl::Cudnn,
        "candle" => ConvImpl::Candle,
        other => anyhow::bail!("unknown --conv-impl {other}"),
    };
    let stage_ops = simclr_sweep::ml::cuda::prepare_stage(&dev, conv_impl)?;
    if let Some(check) = &stage_ops.check {
        eprintln!("self-check of the cuDNN ops: {}", check.describe());
    }
    let enc = EncoderConfig {
        arch,
        stem: Stem::Cifar,
        width: 1,
        ..Default::default()
    };
    let (map, model) = build_model(&enc, &HeadConfig::default(), 3, 0, &dev)?;
    let cfg = OptimizerConfig {
        kind: OptimizerKind::Sgd,
        momentum: 0.9,
        weight_decay: 1e-4,
        ..OptimizerConfig::default()
    };
    let mut opt = Optimizer::from_varmap(&cfg, &map);
    let loss_cfg = LossConfig::default();
    let mut t0 = Instant::now();
    let mut last = 0.0;
    // Seconds per phase over the timed steps: forward, loss, backward, optimizer.
    let mut phase = [0f64; 4];
    for s in 0..warmup + steps {
        if s == warmup {
            t0 = Instant::now();
            phase = [0.0; 4];
        }
        let x =
            Tensor::from_vec(images(2 * n, s as u64), (2 * n, 3, 32, 32), &dev)?.to_dtype(dtype)?;
        let tp = Instant::now();
        let (_, z) = model.forward_t(&x, true)?;
        let t1 = Instant::now();
        let out = contrastive_loss(&z.narrow(0, 0, n)?, &z.narrow(0, n, n)?, &loss_cfg)?;
        last = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let t2 = Instant::now();
        let grads = out.loss.backward()?;
        let t3 = Instant::now();
        opt.step(&grads, 0.1)?;
        drop(grads);
        let t4 = Instant::now();
        for (p, (a, b)) in phase
            .iter_mut()
            .zip([(tp, t1), (t1, t2), (t2, t3), (t3, t4)])
        {
            *p += (b - a).as_secs_f64();
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let ms = |p: f64| 1e3 * p / steps.max(1) as f64;
    eprintln!(
        "phases ms/step: forward {:.1} loss {:.1} backward {:.1} optimizer {:.1}",
        ms(phase[0]),
        ms(phase[1]),
        ms(phase[2]),
        ms(phase[3])
    );
    println!(
        "RESULT step arch={arch_s} n={n} kernels={kern_s} precision={precision} \
         conv_impl={} images_per_s={:.1} maxrss_mib={:.0} sec_per_step={:.3} last_loss={last:.6}",
        conv_impl.name(),
        (2 * n * steps) as f64 / secs,
        max_rss_mib(),
        secs / steps as f64
    );
    Ok(())
}

fn augment_bench(args: &[String]) -> anyhow::Result<()> {
    let n_img: usize = arg(args, "--images", 2048);
    let batch: usize = arg(args, "--batch", 512).min(n_img);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads: usize = arg(args, "--threads", cores);
    let step_pairs: f64 = arg(args, "--step-pairs-per-s", 201.0);
    let aug = AugmentConfig::default();
    let pixels: Vec<u8> = images(n_img, 99)
        .iter()
        .map(|v| (v * 255.0) as u8)
        .collect();
    let set = Arc::new(ImageSet {
        images: pixels,
        labels: vec![0; n_img],
        height: 32,
        width: 32,
        num_classes: 1,
        class_names: vec!["x".into()],
    });
    // augment_pair on one thread.
    let t0 = Instant::now();
    let mut sink = 0usize;
    for i in 0..n_img {
        let img = &set.images[i * 32 * 32 * 3..(i + 1) * 32 * 32 * 3];
        let (a, b) = simclr_sweep::ml::augment::augment_pair(img, 32, 32, &aug, 0, 0, i);
        sink += a[0] as usize + b[0] as usize;
    }
    let pair_vps = (2 * n_img) as f64 / t0.elapsed().as_secs_f64();
    // The threaded loader, batches to f32 [n, 3, 32, 32].
    let idx: Arc<Vec<usize>> = Arc::new((0..n_img).collect());
    let loader = |threads: usize| -> anyhow::Result<f64> {
        let t0 = Instant::now();
        let mut views = 0;
        let epoch = EpochViews {
            views: Views::Pair,
            aug: &aug,
            seed: 0,
            epoch: 0,
            batch_size: batch,
            start_step: 0,
            threads,
        };
        for vb in view_batches(set.clone(), idx.clone(), &epoch)? {
            views += 2 * vb.n;
        }
        Ok(views as f64 / t0.elapsed().as_secs_f64())
    };
    let loader_vps = loader(threads)?;
    // The device pipeline: the set uploaded once, a batch of views per call.
    let device = match argstr(args, "--device", "auto").as_str() {
        "cpu" => Device::Cpu,
        "auto" => Device::cuda_if_available(0)?,
        d => Device::new_cuda(d.strip_prefix("cuda:").unwrap_or(d).parse()?)?,
    };
    let on_dev = DeviceImages::upload(&set, &device)?;
    let order: Vec<usize> = (0..n_img).collect();
    let device_views = |epoch: usize| -> anyhow::Result<f32> {
        let mut total = 0f32;
        for chunk in order.chunks_exact(batch) {
            let (a, b) = on_dev.views(chunk, &aug, 0, epoch, true)?;
            // Reading a scalar back waits for the device.
            total += a.sum_all()?.to_scalar::<f32>()?;
            total += b.map_or(Ok(0.0), |b| b.sum_all()?.to_scalar::<f32>())?;
        }
        Ok(total)
    };
    device_views(0)?; // warm-up (kernels, allocations)
    let t0 = Instant::now();
    device_views(1)?;
    let full = (n_img / batch) * batch;
    let device_vps = (2 * full) as f64 / t0.elapsed().as_secs_f64();
    let dev_name = if device.is_cuda() { "cuda" } else { "cpu" };
    println!(
        "RESULT augment host_1_thread_views_per_s={pair_vps:.0} \
         host_loader_views_per_s={loader_vps:.0} threads={threads} \
         device_views_per_s={device_vps:.0} device={dev_name} batch={batch} \
         step_demand_views_per_s={:.0} (sink {})",
        2.0 * step_pairs,
        sink % 7
    );
    match torchvision(n_img) {
        Some(line) => println!("{line}"),
        None => {
            println!("RESULT augment torchvision skipped: set PYTHON to a Python with torchvision")
        }
    }
    Ok(())
}

/// `bench/step_torch.py augment`'s result line, with `$PYTHON` or `python3`; `None` when
/// neither runs it.
fn torchvision(n_img: usize) -> Option<String> {
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/step_torch.py");
    let out = std::process::Command::new(py)
        .args([script, "augment", "--images", &n_img.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("RESULT augment torchvision"))
        .map(str::to_string)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; the mode is the first word we know.
    if args.iter().any(|a| a == "augment") {
        augment_bench(&args)
    } else if args.iter().any(|a| a == "step") {
        step_bench(&args)
    } else {
        eprintln!("usage: step (step|augment) [options]; see bench/step.rs");
        Ok(())
    }
}
