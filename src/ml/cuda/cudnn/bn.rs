//! Training-mode BatchNorm through cuDNN (spatial mode: statistics per channel over batch
//! and pixels): one cuDNN call forward (normalise, scale, shift; the batch mean and
//! inverse standard deviation saved for the backward; the batch mean and unbiased
//! variance for the running statistics) and one backward (dx, dgamma and dbeta together),
//! as a candle `CustomOp3` over `(x, gamma, beta)`. The running statistics stay on the
//! device, moved by the BatchNorm's momentum as candle_nn does.

use std::sync::{Arc, Mutex};

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::cuda::cudarc::cudnn::sys;
use candle_core::op::BackpropOp;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, Var,
};
use candle_nn::BatchNorm;

use super::super::geometry::BnGeometry;
use super::handle::{err, ptr, ptr_mut, with_context, BnPlan, Scaling, TensorDesc};

const MODE: sys::cudnnBatchNormMode_t = sys::cudnnBatchNormMode_t::CUDNN_BATCHNORM_SPATIAL;

/// What the forward leaves: the saved statistics its backward reads, and the batch mean
/// and unbiased variance (per channel) for the running statistics.
struct Saved {
    mean: CudaStorage,
    inv_std: CudaStorage,
    batch: Option<(CudaStorage, CudaStorage)>,
}

type Stash = Arc<Mutex<Option<Saved>>>;

fn poisoned<T>(_: T) -> candle_core::Error {
    candle_core::Error::Msg("cuDNN batch-norm state poisoned".into())
}

/// `bn.forward_t(x, true)` through cuDNN: x in bn's dtype (f32 or f64), on CUDA.
pub(super) fn batch_norm_train(x: &Tensor, bn: &BatchNorm) -> Result<Tensor> {
    let Some((gamma, beta)) = bn.weight_and_bias() else {
        candle_core::bail!("the cuDNN batch norm needs an affine BatchNorm");
    };
    if !x.device().is_cuda() {
        candle_core::bail!("the cuDNN batch norm runs on CUDA tensors only");
    }
    if !matches!(x.dtype(), DType::F32 | DType::F64) || x.dtype() != gamma.dtype() {
        candle_core::bail!(
            "the cuDNN batch norm takes x in its parameters' dtype (f32 or f64), got {:?} and {:?}",
            x.dtype(),
            gamma.dtype()
        );
    }
    let g = BnGeometry::of(x.dims()).map_err(candle_core::Error::Msg)?;
    if g.c != gamma.elem_count() {
        candle_core::bail!(
            "batch norm: x {:?} does not have {} channels",
            x.shape(),
            gamma.elem_count()
        );
    }
    let stash: Stash = Arc::new(Mutex::new(None));
    let op = BnFwd {
        eps: bn.eps(),
        stash: Arc::clone(&stash),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let batch = stash
        .lock()
        .map_err(poisoned)?
        .as_mut()
        .and_then(|s| s.batch.take())
        .ok_or_else(|| candle_core::Error::Msg("cuDNN batch norm left no statistics".into()))?;
    update_running(bn, batch, g.c).map(|()| y)
}

/// bn's running mean and variance moved towards the batch's by its momentum, on the device.
fn update_running(bn: &BatchNorm, (mean, var): (CudaStorage, CudaStorage), c: usize) -> Result<()> {
    let tensor =
        |s: CudaStorage| Tensor::from_storage(Storage::Cuda(s), c, BackpropOp::none(), false);
    let mom = bn.momentum();
    for (running, batch) in [
        (bn.running_mean(), tensor(mean)),
        (bn.running_var(), tensor(var)),
    ] {
        let v = Var::from_tensor(running)?;
        v.set(&((v.as_tensor() * (1.0 - mom))? + (batch * mom)?)?)?;
    }
    Ok(())
}

fn plan(g: BnGeometry, dtype: DType) -> Result<BnPlan> {
    let x = TensorDesc::new(dtype, g.x_dims())?;
    let param = TensorDesc::empty()?;
    // SAFETY: live descriptors; cuDNN fills `param` from `x`.
    unsafe { sys::cudnnDeriveBNTensorDescriptor(param.0, x.0, MODE) }
        .result()
        .map_err(err)?;
    Ok(BnPlan { x, param })
}

fn contiguous_start(l: &Layout) -> Result<usize> {
    match l.contiguous_offsets() {
        Some((start, _)) => Ok(start),
        None => candle_core::bail!("cuDNN batch norm needs contiguous inputs"),
    }
}

/// (x, gamma, beta) -> y, with its backward.
struct BnFwd {
    eps: f64,
    stash: Stash,
}

impl CustomOp3 for BnFwd {
    fn name(&self) -> &'static str {
        "cudnn-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("{} runs on CUDA only", self.name())
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        lx: &Layout,
        gamma: &CudaStorage,
        lg: &Layout,
        beta: &CudaStorage,
        lb: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = BnGeometry::of(lx.dims()).map_err(candle_core::Error::Msg)?;
        let dtype = x.dtype();
        let (ox, og, ob) = (
            contiguous_start(lx)?,
            contiguous_start(lg)?,
            contiguous_start(lb)?,
        );
        let dev = x.device.clone();
        let per_channel = Shape::from(g.c);
        // SAFETY: y and the saved statistics are written whole by cuDNN (beta = 0).
        let mut y = unsafe { dev.alloc_uninit(lx.shape(), dtype)? };
        let mut mean = unsafe { dev.alloc_uninit(&per_channel, dtype)? };
        let mut inv_std = unsafe { dev.alloc_uninit(&per_channel, dtype)? };
        // Zeroed: cuDNN computes (1 - factor) * old + factor * batch, here with factor 1.
        let mut batch_mean = dev.zeros_impl(&per_channel, dtype)?;
        let mut batch_var = dev.zeros_impl(&per_channel, dtype)?;
        with_context(&dev, |ctx| {
            let h = ctx.handle.0;
            let stream = ctx.stream.clone();
            let p = ctx.bns.get_or_try_insert((g, dtype), || plan(g, dtype))?;
            let s = Scaling::one_zero(dtype);
            let (px, _a) = ptr(x, ox, &stream)?;
            let (pg, _b) = ptr(gamma, og, &stream)?;
            let (pb, _c) = ptr(beta, ob, &stream)?;
            let (py, _d) = ptr_mut(&mut y, 0, &stream)?;
            let (pm, _e) = ptr_mut(&mut batch_mean, 0, &stream)?;
            let (pv, _f) = ptr_mut(&mut batch_var, 0, &stream)?;
            let (psm, _g) = ptr_mut(&mut mean, 0, &stream)?;
            let (psi, _h) = ptr_mut(&mut inv_std, 0, &stream)?;
            // SAFETY: descriptors match the contiguous buffers (dims from `g`, one dtype),
            // on the handle's stream.
            unsafe {
                sys::cudnnBatchNormalizationForwardTraining(
                    h,
                    MODE,
                    s.alpha(),
                    s.beta(),
                    p.x.0,
                    px as *const _,
                    p.x.0,
                    py as *mut _,
                    p.param.0,
                    pg as *const _,
                    pb as *const _,
                    1.0,
                    pm as *mut _,
                    pv as *mut _,
                    self.eps,
                    psm as *mut _,
                    psi as *mut _,
                )
            }
            .result()
            .map_err(err)
        })?;
        *self.stash.lock().map_err(poisoned)? = Some(Saved {
            mean,
            inv_std,
            batch: Some((batch_mean, batch_var)),
        });
        Ok((y, lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = BnGeometry::of(x.dims()).map_err(candle_core::Error::Msg)?;
        let (n, c) = (g.len(), g.c);
        let (a, b, _) = g.packed_gradients();
        let dy = dy.contiguous()?;
        let op = BnBwd {
            eps: self.eps,
            stash: Arc::clone(&self.stash),
        };
        let packed = x.apply_op3_no_bwd(&dy, gamma, &op)?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, a, c)?.reshape(gamma.shape())?;
        let dbeta = packed.narrow(0, b, c)?.reshape(gamma.shape())?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// (x, dy, gamma) -> packed [dx | dgamma | dbeta].
struct BnBwd {
    eps: f64,
    stash: Stash,
}

impl CustomOp3 for BnBwd {
    fn name(&self) -> &'static str {
        "cudnn-batch-norm-train-backward"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("{} runs on CUDA only", self.name())
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        lx: &Layout,
        dy: &CudaStorage,
        ldy: &Layout,
        gamma: &CudaStorage,
        lg: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = BnGeometry::of(lx.dims()).map_err(candle_core::Error::Msg)?;
        let dtype = x.dtype();
        let (ox, ody, og) = (
            contiguous_start(lx)?,
            contiguous_start(ldy)?,
            contiguous_start(lg)?,
        );
        let (a, b, len) = g.packed_gradients();
        let shape = Shape::from(len);
        let dev = x.device.clone();
        // Zeroed: the padding between the parts is never written.
        let mut out = dev.zeros_impl(&shape, dtype)?;
        let saved = self.stash.lock().map_err(poisoned)?;
        let saved = saved.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("cuDNN batch-norm backward before its forward".into())
        })?;
        with_context(&dev, |ctx| {
            let h = ctx.handle.0;
            let stream = ctx.stream.clone();
            let p = ctx.bns.get_or_try_insert((g, dtype), || plan(g, dtype))?;
            let s = Scaling::one_zero(dtype);
            let (px, _a) = ptr(x, ox, &stream)?;
            let (pdy, _b) = ptr(dy, ody, &stream)?;
            let (pg, _c) = ptr(gamma, og, &stream)?;
            let (psm, _d) = ptr(&saved.mean, 0, &stream)?;
            let (psi, _e) = ptr(&saved.inv_std, 0, &stream)?;
            let (pdx, _f) = ptr_mut(&mut out, 0, &stream)?;
            let elem = dtype.size_in_bytes() as u64;
            let (pdg, pdb) = (pdx + a as u64 * elem, pdx + b as u64 * elem);
            // SAFETY: descriptors match the contiguous buffers; the three outputs are
            // disjoint parts of `out`; the saved statistics are this forward's.
            unsafe {
                sys::cudnnBatchNormalizationBackward(
                    h,
                    MODE,
                    s.alpha(),
                    s.beta(),
                    s.alpha(),
                    s.beta(),
                    p.x.0,
                    px as *const _,
                    p.x.0,
                    pdy as *const _,
                    p.x.0,
                    pdx as *mut _,
                    p.param.0,
                    pg as *const _,
                    pdg as *mut _,
                    pdb as *mut _,
                    self.eps,
                    psm as *const _,
                    psi as *const _,
                )
            }
            .result()
            .map_err(err)
        })?;
        Ok((out, shape))
    }
}
