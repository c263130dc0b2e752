//! conv2d through cuDNN in all three directions, as a candle `CustomOp2` over `(x, w)`
//! whose backward applies two more (`(dy, w) -> dx`, `(x, dy) -> dw`). Each shape's
//! descriptors and algorithms (cuDNN's heuristics, the fastest whose workspace fits) are
//! found once; every call shares the context's workspace.

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::cuda::cudarc::cudnn::{result as cr, sys};
use candle_core::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::super::geometry::{math_for, ConvGeometry, ConvKey, Math};
use super::handle::{
    err, math_type, ptr, ptr_mut, with_context, workspace_ptr, ConvDesc, ConvPlan, FilterDesc,
    Scaling, TensorDesc,
};

/// Algorithms whose workspace is larger than this are passed over.
const WORKSPACE_LIMIT: usize = 1 << 30;

/// `x` convolved with `w` (both contiguous, same dtype) through cuDNN.
pub(super) fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    if !x.device().is_cuda() {
        candle_core::bail!("the cuDNN convolution runs on CUDA tensors only");
    }
    if x.dtype() != w.dtype() {
        candle_core::bail!("cuDNN conv2d: x is {:?}, w is {:?}", x.dtype(), w.dtype());
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, ConvFwd { stride, pad })
}

/// The stage's math for `dtype`: TF32 only when the stage asked for it (`precision: tf32`
/// turns on candle's switch for cuBLAS, which this follows).
fn conv_key(g: ConvGeometry, dtype: DType) -> ConvKey {
    ConvKey {
        geometry: g,
        dtype,
        math: math_for(dtype, candle_core::cuda::gemm_reduced_precision_f32()),
    }
}

/// Whether an algorithm cuDNN proposes may run under `math`: strict float32 takes no
/// tensor-core algorithm.
fn allowed(math: Math, algo_math: sys::cudnnMathType_t) -> bool {
    math != Math::Fma
        || matches!(
            algo_math,
            sys::cudnnMathType_t::CUDNN_FMA_MATH | sys::cudnnMathType_t::CUDNN_DEFAULT_MATH
        )
}

/// The math type the descriptor of a chosen algorithm gets: the strict one stays strict,
/// else what cuDNN reported for the algorithm (as PyTorch does).
fn chosen_math(math: Math, algo_math: sys::cudnnMathType_t) -> sys::cudnnMathType_t {
    if math == Math::Fma {
        math_type(Math::Fma)
    } else {
        algo_math
    }
}

/// Finds the plan for `key`: descriptors, then per direction the first algorithm of
/// cuDNN's heuristic ranking that succeeds, is allowed and fits the workspace limit.
fn plan(h: sys::cudnnHandle_t, key: &ConvKey) -> Result<ConvPlan> {
    let g = key.geometry;
    let x = TensorDesc::new(key.dtype, g.x_dims())?;
    let w = FilterDesc::new(key.dtype, g.w_dims())?;
    let y = TensorDesc::new(key.dtype, g.y_dims())?;
    let probe = ConvDesc::new(key, math_type(key.math))?;
    let none = || candle_core::Error::Msg(format!("cuDNN has no usable algorithm for {g}"));

    // SAFETY (the three blocks): live handle and descriptors; cuDNN writes at most
    // `requested` results into the arrays.
    let fwd = {
        const N: usize = sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_COUNT as usize;
        // SAFETY: plain C data whose enums all have a 0 variant; cuDNN overwrites it.
        let mut perf: [sys::cudnnConvolutionFwdAlgoPerf_t; N] = unsafe { std::mem::zeroed() };
        let mut count = 0;
        unsafe {
            cr::get_convolution_forward_algorithm(
                h,
                x.0,
                w.0,
                probe.0,
                y.0,
                N as i32,
                &mut count,
                perf.as_mut_ptr(),
            )
        }
        .map_err(err)?;
        let p = perf[..count.max(0) as usize]
            .iter()
            .find(|p| {
                p.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                    && allowed(key.math, p.mathType)
                    && p.memory <= WORKSPACE_LIMIT
            })
            .ok_or_else(none)?;
        let desc = ConvDesc::new(key, chosen_math(key.math, p.mathType))?;
        let bytes =
            unsafe { cr::get_convolution_forward_workspace_size(h, x.0, w.0, desc.0, y.0, p.algo) }
                .map_err(err)?;
        (desc, p.algo, bytes)
    };
    let bwd_data = {
        const N: usize =
            sys::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT as usize;
        // SAFETY: plain C data whose enums all have a 0 variant; cuDNN overwrites it.
        let mut perf: [sys::cudnnConvolutionBwdDataAlgoPerf_t; N] = unsafe { std::mem::zeroed() };
        let mut count = 0;
        unsafe {
            cr::get_convolution_backward_data_algorithm(
                h,
                w.0,
                y.0,
                probe.0,
                x.0,
                N as i32,
                &mut count,
                perf.as_mut_ptr(),
            )
        }
        .map_err(err)?;
        let p = perf[..count.max(0) as usize]
            .iter()
            .find(|p| {
                p.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                    && allowed(key.math, p.mathType)
                    && p.memory <= WORKSPACE_LIMIT
            })
            .ok_or_else(none)?;
        let desc = ConvDesc::new(key, chosen_math(key.math, p.mathType))?;
        let bytes = unsafe {
            cr::get_convolution_backward_data_workspace_size(h, w.0, y.0, desc.0, x.0, p.algo)
        }
        .map_err(err)?;
        (desc, p.algo, bytes)
    };
    let bwd_filter = {
        const N: usize =
            sys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT as usize;
        // SAFETY: plain C data whose enums all have a 0 variant; cuDNN overwrites it.
        let mut perf: [sys::cudnnConvolutionBwdFilterAlgoPerf_t; N] = unsafe { std::mem::zeroed() };
        let mut count = 0;
        unsafe {
            cr::get_convolution_backward_filter_algorithm(
                h,
                x.0,
                y.0,
                probe.0,
                w.0,
                N as i32,
                &mut count,
                perf.as_mut_ptr(),
            )
        }
        .map_err(err)?;
        let p = perf[..count.max(0) as usize]
            .iter()
            .find(|p| {
                p.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                    && allowed(key.math, p.mathType)
                    && p.memory <= WORKSPACE_LIMIT
            })
            .ok_or_else(none)?;
        let desc = ConvDesc::new(key, chosen_math(key.math, p.mathType))?;
        let bytes = unsafe {
            cr::get_convolution_backward_filter_workspace_size(h, x.0, y.0, desc.0, w.0, p.algo)
        }
        .map_err(err)?;
        (desc, p.algo, bytes)
    };
    Ok(ConvPlan {
        x,
        w,
        y,
        fwd,
        bwd_data,
        bwd_filter,
    })
}

/// Which convolution a launch computes.
#[derive(Clone, Copy)]
enum Direction {
    /// (x, w) -> y
    Forward,
    /// (dy, w) -> dx
    BackwardData,
    /// (x, dy) -> dw
    BackwardFilter,
}

/// Runs one direction of the convolution of geometry `g` on the contiguous inputs `a`
/// and `b` (see [`Direction`]) into a new storage.
fn launch(
    dir: Direction,
    g: ConvGeometry,
    (a, la): (&CudaStorage, &Layout),
    (b, lb): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dtype = a.dtype();
    if b.dtype() != dtype {
        candle_core::bail!("cuDNN conv2d: inputs of {dtype:?} and {:?}", b.dtype());
    }
    let (Some((a_off, _)), Some((b_off, _))) = (la.contiguous_offsets(), lb.contiguous_offsets())
    else {
        candle_core::bail!("cuDNN conv2d needs contiguous inputs");
    };
    let out_dims = match dir {
        Direction::Forward => g.y_dims(),
        Direction::BackwardData => g.x_dims(),
        Direction::BackwardFilter => g.w_dims(),
    };
    let shape = Shape::from(out_dims.to_vec());
    let dev = a.device.clone();
    // SAFETY: every element is written by cuDNN (beta = 0: the output is not read).
    let mut out = unsafe { dev.alloc_uninit(&shape, dtype)? };
    let key = conv_key(g, dtype);
    with_context(&dev, |ctx| {
        let h = ctx.handle.0;
        let stream = ctx.stream.clone();
        let p = ctx.convs.get_or_try_insert(key, || plan(h, &key))?;
        let bytes = match dir {
            Direction::Forward => p.fwd.2,
            Direction::BackwardData => p.bwd_data.2,
            Direction::BackwardFilter => p.bwd_filter.2,
        };
        let (ws, _ws_guard) = workspace_ptr(&mut ctx.workspace, &stream, bytes)?;
        let s = Scaling::one_zero(dtype);
        let (pa, _ga) = ptr(a, a_off, &stream)?;
        let (pb, _gb) = ptr(b, b_off, &stream)?;
        let (po, _go) = ptr_mut(&mut out, 0, &stream)?;
        let (pa, pb, po) = (
            pa as *const std::ffi::c_void,
            pb as *const std::ffi::c_void,
            po as *mut std::ffi::c_void,
        );
        // SAFETY: descriptors match the contiguous buffers (shapes from `g`, dtype
        // checked), the workspace holds `bytes`, all on the handle's stream.
        unsafe {
            match dir {
                Direction::Forward => cr::convolution_forward(
                    h,
                    s.alpha(),
                    p.x.0,
                    pa,
                    p.w.0,
                    pb,
                    p.fwd.0 .0,
                    p.fwd.1,
                    ws,
                    bytes,
                    s.beta(),
                    p.y.0,
                    po,
                ),
                Direction::BackwardData => cr::convolution_backward_data(
                    h,
                    s.alpha(),
                    p.w.0,
                    pb,
                    p.y.0,
                    pa,
                    p.bwd_data.0 .0,
                    p.bwd_data.1,
                    ws,
                    bytes,
                    s.beta(),
                    p.x.0,
                    po,
                ),
                Direction::BackwardFilter => cr::convolution_backward_filter(
                    h,
                    s.alpha(),
                    p.x.0,
                    pa,
                    p.y.0,
                    pb,
                    p.bwd_filter.0 .0,
                    p.bwd_filter.1,
                    ws,
                    bytes,
                    s.beta(),
                    p.w.0,
                    po,
                ),
            }
        }
        .map_err(err)
    })?;
    Ok((out, shape))
}

fn cpu_refused(name: &str) -> Result<(CpuStorage, Shape)> {
    candle_core::bail!("{name} runs on CUDA only")
}

/// (x, w) -> y, with its backward.
struct ConvFwd {
    stride: usize,
    pad: usize,
}

impl ConvFwd {
    fn geometry(&self, x: &[usize], w: &[usize]) -> Result<ConvGeometry> {
        ConvGeometry::of(x, w, self.stride, self.pad).map_err(candle_core::Error::Msg)
    }
}

impl CustomOp2 for ConvFwd {
    fn name(&self) -> &'static str {
        "cudnn-conv2d"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_refused(self.name())
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        lx: &Layout,
        w: &CudaStorage,
        lw: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = self.geometry(lx.dims(), lw.dims())?;
        launch(Direction::Forward, g, (x, lx), (w, lw))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geometry(x.dims(), w.dims())?;
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(
            w,
            &ConvBwd {
                g,
                dir: Direction::BackwardData,
            },
        )?;
        let dw = x.apply_op2_no_bwd(
            &dy,
            &ConvBwd {
                g,
                dir: Direction::BackwardFilter,
            },
        )?;
        Ok((Some(dx), Some(dw)))
    }
}

/// (dy, w) -> dx or (x, dy) -> dw.
struct ConvBwd {
    g: ConvGeometry,
    dir: Direction,
}

impl CustomOp2 for ConvBwd {
    fn name(&self) -> &'static str {
        match self.dir {
            Direction::BackwardFilter => "cudnn-conv2d-backward-filter",
            _ => "cudnn-conv2d-backward-data",
        }
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_refused(self.name())
    }

    fn cuda_fwd(
        &self,
        a: &CudaStorage,
        la: &Layout,
        b: &CudaStorage,
        lb: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        launch(self.dir, self.g, (a, la), (b, lb))
    }
}
