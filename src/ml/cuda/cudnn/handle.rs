//! cuDNN's state on one device, per thread (a cuDNN handle must not be shared between
//! threads): the handle on candle's stream for that device, the descriptors and algorithms
//! found for each convolution shape, the batch-norm descriptors per shape, and the one
//! workspace every convolution shares. Also the owned descriptors (destroyed on drop) and
//! the device pointers of candle storages.

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::cuda::cudarc::cudnn::{result as cr, sys};
use candle_core::cuda::cudarc::driver::{
    CudaSlice, CudaStream, DevicePtr, DevicePtrMut, SyncOnDrop,
};
use candle_core::cuda_backend::{CudaStorageSlice, DeviceId};
use candle_core::{CudaDevice, CudaStorage, DType, Result};

use super::super::geometry::{as_i32, BnGeometry, ConvKey, Math};
use super::super::workspace::{PerShape, Workspace};

/// A cuDNN error as candle's.
pub(super) fn err(e: cr::CudnnError) -> candle_core::Error {
    candle_core::Error::Msg(format!("cuDNN: {e:?}"))
}

/// cuDNN's name for a dtype the ops handle.
pub(super) fn data_type(d: DType) -> Result<sys::cudnnDataType_t> {
    use sys::cudnnDataType_t as T;
    Ok(match d {
        DType::F32 => T::CUDNN_DATA_FLOAT,
        DType::F64 => T::CUDNN_DATA_DOUBLE,
        DType::BF16 => T::CUDNN_DATA_BFLOAT16,
        DType::F16 => T::CUDNN_DATA_HALF,
        other => candle_core::bail!("cuDNN ops take f32, f64, bf16 or f16, not {other:?}"),
    })
}

/// The type convolutions accumulate in (and of alpha / beta): float64 for float64 data,
/// float32 otherwise.
pub(super) fn compute_type(d: DType) -> sys::cudnnDataType_t {
    match d {
        DType::F64 => sys::cudnnDataType_t::CUDNN_DATA_DOUBLE,
        _ => sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
    }
}

pub(super) fn math_type(m: Math) -> sys::cudnnMathType_t {
    match m {
        Math::Fma => sys::cudnnMathType_t::CUDNN_FMA_MATH,
        Math::Tf32 => sys::cudnnMathType_t::CUDNN_DEFAULT_MATH,
        Math::TensorOp => sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
    }
}

/// alpha = 1 and beta = 0 in the type cuDNN reads them as for `d`.
pub(super) enum Scaling {
    F32([f32; 2]),
    F64([f64; 2]),
}

impl Scaling {
    pub(super) fn one_zero(d: DType) -> Self {
        match d {
            DType::F64 => Scaling::F64([1.0, 0.0]),
            _ => Scaling::F32([1.0, 0.0]),
        }
    }

    pub(super) fn alpha(&self) -> *const std::ffi::c_void {
        match self {
            Scaling::F32(v) => &v[0] as *const f32 as *const _,
            Scaling::F64(v) => &v[0] as *const f64 as *const _,
        }
    }

    pub(super) fn beta(&self) -> *const std::ffi::c_void {
        match self {
            Scaling::F32(v) => &v[1] as *const f32 as *const _,
            Scaling::F64(v) => &v[1] as *const f64 as *const _,
        }
    }
}

pub(super) struct Handle(pub(super) sys::cudnnHandle_t);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreate and destroyed once, here.
        let _ = unsafe { cr::destroy_handle(self.0) };
    }
}

/// A 4-d tensor descriptor (packed NCHW).
pub(super) struct TensorDesc(pub(super) sys::cudnnTensorDescriptor_t);

impl TensorDesc {
    pub(super) fn new(dtype: DType, dims: [usize; 4]) -> Result<Self> {
        let d = TensorDesc(cr::create_tensor_descriptor().map_err(err)?);
        // SAFETY: a freshly created descriptor.
        unsafe {
            cr::set_tensor4d_descriptor(
                d.0,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                data_type(dtype)?,
                as_i32(dims),
            )
        }
        .map_err(err)?;
        Ok(d)
    }

    /// An empty descriptor for cuDNN to fill (`cudnnDeriveBNTensorDescriptor`).
    pub(super) fn empty() -> Result<Self> {
        Ok(TensorDesc(cr::create_tensor_descriptor().map_err(err)?))
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created here, destroyed once.
        let _ = unsafe { cr::destroy_tensor_descriptor(self.0) };
    }
}

pub(super) struct FilterDesc(pub(super) sys::cudnnFilterDescriptor_t);

impl FilterDesc {
    pub(super) fn new(dtype: DType, dims: [usize; 4]) -> Result<Self> {
        let d = FilterDesc(cr::create_filter_descriptor().map_err(err)?);
        // SAFETY: a freshly created descriptor.
        unsafe {
            cr::set_filter4d_descriptor(
                d.0,
                data_type(dtype)?,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                as_i32(dims),
            )
        }
        .map_err(err)?;
        Ok(d)
    }
}

impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: created here, destroyed once.
        let _ = unsafe { cr::destroy_filter_descriptor(self.0) };
    }
}

pub(super) struct ConvDesc(pub(super) sys::cudnnConvolutionDescriptor_t);

impl ConvDesc {
    pub(super) fn new(key: &ConvKey, math: sys::cudnnMathType_t) -> Result<Self> {
        let d = ConvDesc(cr::create_convolution_descriptor().map_err(err)?);
        let ([ph, pw], [sh, sw], [dh, dw]) = key.geometry.descriptor_params();
        // SAFETY: a freshly created descriptor.
        unsafe {
            cr::set_convolution2d_descriptor(
                d.0,
                ph,
                pw,
                sh,
                sw,
                dh,
                dw,
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                compute_type(key.dtype),
            )
            .map_err(err)?;
            cr::set_convolution_math_type(d.0, math).map_err(err)?;
        }
        Ok(d)
    }
}

impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: created here, destroyed once.
        let _ = unsafe { cr::destroy_convolution_descriptor(self.0) };
    }
}

/// The device pointer of element `offset` of a float storage, and the guard that records
/// the access on `stream` when dropped (after the launch).
pub(super) fn ptr<'a>(
    s: &'a CudaStorage,
    offset: usize,
    stream: &'a Arc<CudaStream>,
) -> Result<(u64, SyncOnDrop<'a>)> {
    fn at<'a, T>(
        v: &'a CudaSlice<T>,
        off: usize,
        st: &'a Arc<CudaStream>,
    ) -> Result<(u64, SyncOnDrop<'a>)> {
        if off > v.len() {
            candle_core::bail!("cuDNN op: offset {off} past a buffer of {}", v.len());
        }
        let (p, guard) = v.device_ptr(st);
        Ok((p + (off * std::mem::size_of::<T>()) as u64, guard))
    }
    match &s.slice {
        CudaStorageSlice::F32(v) => at(v, offset, stream),
        CudaStorageSlice::F64(v) => at(v, offset, stream),
        CudaStorageSlice::BF16(v) => at(v, offset, stream),
        CudaStorageSlice::F16(v) => at(v, offset, stream),
        _ => candle_core::bail!("cuDNN ops take f32, f64, bf16 or f16, not {:?}", s.dtype()),
    }
}

/// [`ptr`] for writing.
pub(super) fn ptr_mut<'a>(
    s: &'a mut CudaStorage,
    offset: usize,
    stream: &'a Arc<CudaStream>,
) -> Result<(u64, SyncOnDrop<'a>)> {
    fn at<'a, T>(
        v: &'a mut CudaSlice<T>,
        off: usize,
        st: &'a Arc<CudaStream>,
    ) -> Result<(u64, SyncOnDrop<'a>)> {
        if off > v.len() {
            candle_core::bail!("cuDNN op: offset {off} past a buffer of {}", v.len());
        }
        let (p, guard) = v.device_ptr_mut(st);
        Ok((p + (off * std::mem::size_of::<T>()) as u64, guard))
    }
    let dtype = s.dtype();
    match &mut s.slice {
        CudaStorageSlice::F32(v) => at(v, offset, stream),
        CudaStorageSlice::F64(v) => at(v, offset, stream),
        CudaStorageSlice::BF16(v) => at(v, offset, stream),
        CudaStorageSlice::F16(v) => at(v, offset, stream),
        _ => candle_core::bail!("cuDNN ops take f32, f64, bf16 or f16, not {dtype:?}"),
    }
}

/// The descriptors and algorithms of one convolution shape, found once.
pub(super) struct ConvPlan {
    pub(super) x: TensorDesc,
    pub(super) w: FilterDesc,
    pub(super) y: TensorDesc,
    /// One convolution descriptor per direction: each carries the math type its algorithm
    /// was chosen with.
    pub(super) fwd: (ConvDesc, sys::cudnnConvolutionFwdAlgo_t, usize),
    pub(super) bwd_data: (ConvDesc, sys::cudnnConvolutionBwdDataAlgo_t, usize),
    pub(super) bwd_filter: (ConvDesc, sys::cudnnConvolutionBwdFilterAlgo_t, usize),
}

/// The descriptors of one batch-norm shape: x (and y, dx, dy) and the per-channel
/// parameters, derived by cuDNN.
pub(super) struct BnPlan {
    pub(super) x: TensorDesc,
    pub(super) param: TensorDesc,
}

/// cuDNN's state for one device on this thread.
pub(super) struct Context {
    pub(super) handle: Handle,
    pub(super) stream: Arc<CudaStream>,
    pub(super) convs: PerShape<ConvKey, ConvPlan>,
    pub(super) bns: PerShape<(BnGeometry, DType), BnPlan>,
    pub(super) workspace: Workspace<CudaSlice<u8>>,
}

impl Context {
    fn new(dev: &CudaDevice) -> Result<Self> {
        let stream = dev.cuda_stream();
        stream.context().bind_to_thread()?;
        let handle = Handle(cr::create_handle().map_err(err)?);
        // SAFETY: a valid handle and candle's live stream for this device.
        unsafe { cr::set_stream(handle.0, stream.cu_stream() as *mut _) }.map_err(err)?;
        Ok(Self {
            handle,
            stream,
            convs: PerShape::default(),
            bns: PerShape::default(),
            workspace: Workspace::default(),
        })
    }
}

/// The device pointer of a workspace of at least `bytes` (null for 0) and its guard.
pub(super) fn workspace_ptr<'a>(
    ws: &'a mut Workspace<CudaSlice<u8>>,
    stream: &'a Arc<CudaStream>,
    bytes: usize,
) -> Result<(*mut std::ffi::c_void, Option<SyncOnDrop<'a>>)> {
    // SAFETY (alloc): cuDNN's scratch space; nothing reads what it did not write.
    let buf = ws.at_least(bytes, |n| {
        unsafe { stream.alloc::<u8>(n) }.map_err(candle_core::Error::wrap)
    })?;
    Ok(match buf {
        None => (std::ptr::null_mut(), None),
        Some(b) => {
            let (p, g) = b.device_ptr_mut(stream);
            (p as *mut std::ffi::c_void, Some(g))
        }
    })
}

thread_local! {
    static CONTEXTS: RefCell<Vec<(DeviceId, Context)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's cuDNN state for `dev` (made on first use).
pub(super) fn with_context<R>(
    dev: &CudaDevice,
    f: impl FnOnce(&mut Context) -> Result<R>,
) -> Result<R> {
    CONTEXTS.with(|all| {
        let mut all = all
            .try_borrow_mut()
            .map_err(|_| candle_core::Error::Msg("cuDNN context used re-entrantly".into()))?;
        let i = match all.iter().position(|(id, _)| *id == dev.id()) {
            Some(i) => i,
            None => {
                all.push((dev.id(), Context::new(dev)?));
                all.len() - 1
            }
        };
        f(&mut all[i].1)
    })
}
