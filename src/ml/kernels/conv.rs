//! conv2d (square kernel, stride, zero padding, no dilation, no groups, no bias: what the
//! encoders of section 2.1 / appendix B.9 use) as a candle `CustomOp2` with its own
//! backward. Layout NCHW, like candle and PyTorch.
//!
//! - forward: per group of images, im2col `[Cin*k*k, G*OH*OW]` then one GEMM
//!   `W [Cout, Cin*k*k] x col`.
//! - input gradient: `W^T x dY` into a column buffer, then col2im (scatter-add).
//! - weight gradient: `dY x col^T`, accumulated per part and summed in a fixed order.
//!
//! A 1x1 stride-1 conv needs no im2col: the image is its own column matrix. Images are
//! grouped so that each GEMM has at least `MIN_COLS` columns (deep layers have 4x4 maps).
//! Groups are spread over rayon's pool; every GEMM is single-threaded (`gemm` crate).

use candle_core::{Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::{uninit_vec, Kernel, Op, Real, PARTS};

/// Fewest GEMM columns worth a call of their own in the forward and the input gradient
/// (images are grouped below that). Measured on ResNet-18's 8x8 and 4x4 layers (B=128,
/// 2 cores): 64 beat 256 by 5-20%, and 1024 lost.
const MIN_COLS: usize = 64;
/// The same for the weight gradient, whose GEMM accumulates over the columns (its depth):
/// 256 was best there (64 and 512+ lost up to 40% on 4x4 maps).
const MIN_COLS_DW: usize = 256;
/// Most tasks the batch is split into (each reuses its scratch buffers).
const MAX_TASKS: usize = 8;

#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    pub(super) b: usize,
    pub(super) cin: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) cout: usize,
    pub(super) k: usize,
    stride: usize,
    pad: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Geom {
    pub(super) fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[b, cin, h, wd], &[cout, cin2, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d: expected [B,C,H,W] and [O,C,k,k], got {x:?} and {w:?}");
        };
        if cin != cin2 || kh != kw || kh == 0 || stride == 0 {
            candle_core::bail!("conv2d: incompatible input {x:?} / kernel {w:?} / stride {stride}");
        }
        if h + 2 * pad < kh || wd + 2 * pad < kw {
            candle_core::bail!("conv2d: kernel {kh} larger than padded input {x:?}");
        }
        Ok(Self {
            b,
            cin,
            h,
            w: wd,
            cout,
            k: kh,
            stride,
            pad,
            oh: (h + 2 * pad - kh) / stride + 1,
            ow: (wd + 2 * pad - kw) / stride + 1,
        })
    }
    /// Rows of the column matrix.
    fn kk(&self) -> usize {
        self.cin * self.k * self.k
    }
    pub(super) fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    pub(super) fn hw(&self) -> usize {
        self.h * self.w
    }
    fn identity(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    /// Images per GEMM of the forward and the input gradient.
    fn group(&self) -> usize {
        self.group_of(MIN_COLS)
    }
    /// Images per GEMM with at least `cols` columns.
    fn group_of(&self, cols: usize) -> usize {
        cols.div_ceil(self.ohw()).clamp(1, self.b.max(1))
    }
    /// Images per task: whole groups, at most `MAX_TASKS` tasks.
    fn per_task(&self) -> usize {
        let g = self.group();
        let groups = self.b.div_ceil(g).max(1);
        groups.div_ceil(MAX_TASKS.min(groups)) * g
    }
    /// Valid output columns `[lo, hi)` for kernel column `kx` (input column inside the image).
    fn ox_range(&self, kx: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = if kx >= p { 0 } else { (p - kx).div_ceil(s) };
        let hi = if self.w - 1 + p >= kx {
            ((self.w - 1 + p - kx) / s + 1).min(self.ow)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
    /// Input row for output row `oy`, kernel row `ky`, if inside the image.
    fn iy(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad)
            .filter(|&iy| iy < self.h)
    }
}

thread_local! {
    /// Freed scratch buffers of this thread (f64 words, reinterpreted as f32 or f64).
    static POOL: std::cell::RefCell<Vec<Vec<f64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A work buffer reused across calls on the same thread: no allocation, page faults or zero
/// fill per task. Its contents are stale: every user overwrites what it reads (im2col,
/// gather, GEMM without accumulation).
struct Scratch<T> {
    buf: Vec<f64>,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Real> Scratch<T> {
    fn new() -> Self {
        let buf = POOL
            .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
            .ok()
            .flatten();
        Self {
            buf: buf.unwrap_or_default(),
            len: 0,
            _t: std::marker::PhantomData,
        }
    }

    /// Make it `n` elements long (new words zero, old ones stale).
    fn resize(&mut self, n: usize, _fill: T) {
        let words = (n * std::mem::size_of::<T>()).div_ceil(8);
        if self.buf.len() < words {
            self.buf.resize(words, 0.0);
        }
        self.len = n;
    }
}

impl<T: Real> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: T is f32 or f64 (any bit pattern valid, alignment <= 8) and the buffer
        // holds at least len * size_of::<T>() bytes.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const T, self.len) }
    }
}

impl<T: Real> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr() as *mut T, self.len) }
    }
}

impl<T> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.is_empty() {
            return;
        }
        let _ = POOL.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                if p.len() < 4 {
                    p.push(buf);
                }
            }
        });
    }
}

/// `col[r][off + oy*OW + ox]` (row length `ld`) = `x[c][oy*s+ky-p][ox*s+kx-p]` (0 outside),
/// `r = (c*k + ky)*k + kx`; `x` is one image `[Cin, H, W]`.
fn im2col<T: Real>(x: &[T], g: &Geom, col: &mut [T], ld: usize, off: usize) {
    let (k, s, p, ow) = (g.k, g.stride, g.pad, g.ow);
    for c in 0..g.cin {
        let xc = &x[c * g.hw()..(c + 1) * g.hw()];
        for ky in 0..k {
            for kx in 0..k {
                let row = ((c * k + ky) * k + kx) * ld + off;
                let (lo, hi) = g.ox_range(kx);
                for oy in 0..g.oh {
                    let dst = &mut col[row + oy * ow..row + oy * ow + ow];
                    let Some(iy) = g.iy(oy, ky) else {
                        dst.fill(T::ZERO);
                        continue;
                    };
                    let src = &xc[iy * g.w..(iy + 1) * g.w];
                    dst[..lo].fill(T::ZERO);
                    dst[hi..].fill(T::ZERO);
                    if s == 1 {
                        let i0 = lo + kx - p;
                        dst[lo..hi].copy_from_slice(&src[i0..i0 + hi - lo]);
                    } else {
                        for (ox, d) in dst.iter_mut().enumerate().take(hi).skip(lo) {
                            *d = src[ox * s + kx - p];
                        }
                    }
                }
            }
        }
    }
}

/// Adjoint of [`im2col`]: `x[c][iy][ix] += col[r][off + oy*OW + ox]`.
fn col2im<T: Real>(col: &[T], g: &Geom, x: &mut [T], ld: usize, off: usize) {
    let (k, s, p, ow) = (g.k, g.stride, g.pad, g.ow);
    for c in 0..g.cin {
        let xc = &mut x[c * g.hw()..(c + 1) * g.hw()];
        for ky in 0..k {
            for kx in 0..k {
                let row = ((c * k + ky) * k + kx) * ld + off;
                let (lo, hi) = g.ox_range(kx);
                for oy in 0..g.oh {
                    let Some(iy) = g.iy(oy, ky) else { continue };
                    let src = &col[row + oy * ow..row + oy * ow + ow];
                    let dst = &mut xc[iy * g.w..(iy + 1) * g.w];
                    if s == 1 {
                        let i0 = lo + kx - p;
                        for (d, &v) in dst[i0..i0 + hi - lo].iter_mut().zip(&src[lo..hi]) {
                            *d += v;
                        }
                    } else {
                        for (ox, &v) in src.iter().enumerate().take(hi).skip(lo) {
                            dst[ox * s + kx - p] += v;
                        }
                    }
                }
            }
        }
    }
}

/// A read-only matrix operand of [`mm`]: its first element and its row and column strides
/// (so a transpose is a swap of the strides, never a copy).
#[derive(Clone, Copy)]
struct Operand<T> {
    ptr: *const T,
    row_stride: usize,
    col_stride: usize,
}

impl<T> Operand<T> {
    fn new(ptr: *const T, row_stride: usize, col_stride: usize) -> Self {
        Self {
            ptr,
            row_stride,
            col_stride,
        }
    }
}

/// Row-major `dst [m, n] (+)= a [m, k] x b [k, n]` (`dst` contiguous). Single-threaded:
/// callers parallelise over images.
///
/// # Safety
/// The pointers must address matrices of the given shapes and strides.
unsafe fn mm<T: Real>(
    [m, n, k]: [usize; 3],
    dst: *mut T,
    accumulate: bool,
    a: Operand<T>,
    b: Operand<T>,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        n as isize,
        accumulate,
        a.ptr,
        a.col_stride as isize,
        a.row_stride as isize,
        b.ptr,
        b.col_stride as isize,
        b.row_stride as isize,
        if accumulate { T::ONE } else { T::ZERO },
        T::ONE,
        false,
        false,
        false,
        Parallelism::None,
    )
}

/// Copy `nb` images' `[C, HW]` blocks into one `[C, nb*HW]` matrix.
fn gather<T: Real>(src: &[T], c: usize, hw: usize, nb: usize, dst: &mut [T]) {
    let ld = nb * hw;
    for i in 0..nb {
        for ch in 0..c {
            let s = &src[(i * c + ch) * hw..(i * c + ch + 1) * hw];
            dst[ch * ld + i * hw..ch * ld + (i + 1) * hw].copy_from_slice(s);
        }
    }
}

/// Inverse of [`gather`].
fn scatter<T: Real>(src: &[T], c: usize, hw: usize, nb: usize, dst: &mut [T]) {
    let ld = nb * hw;
    for i in 0..nb {
        for ch in 0..c {
            dst[(i * c + ch) * hw..(i * c + ch + 1) * hw]
                .copy_from_slice(&src[ch * ld + i * hw..ch * ld + (i + 1) * hw]);
        }
    }
}

/// The column matrix `[kk, nb*OH*OW]` of a group of `nb` images `xg`: the images
/// themselves for one image of a 1x1 stride-1 conv, else their im2col in `col`.
fn columns<T: Real>(xg: &[T], g: &Geom, nb: usize, col: &mut Scratch<T>) -> *const T {
    if nb == 1 && g.identity() {
        return xg.as_ptr();
    }
    let (img_in, ohw) = (g.cin * g.hw(), g.ohw());
    let ld = nb * ohw;
    col.resize(g.kk() * ld, T::ZERO);
    for i in 0..nb {
        im2col(&xg[i * img_in..(i + 1) * img_in], g, col, ld, i * ohw);
    }
    col.as_ptr()
}

/// A group's output gradient `dyg` (`nb` images `[Cout, OH*OW]`) as one `[Cout, nb*OH*OW]`
/// matrix: itself for one image, else [`gather`]ed into `buf`.
fn grouped<T: Real>(dyg: &[T], g: &Geom, nb: usize, buf: &mut Scratch<T>) -> *const T {
    if nb == 1 {
        return dyg.as_ptr();
    }
    buf.resize(g.cout * nb * g.ohw(), T::ZERO);
    gather(dyg, g.cout, g.ohw(), nb, buf);
    buf.as_ptr()
}

/// Calls `f(first, nb, part, s1, s2)` for each group of `nb` images from image `first`,
/// `part` being their share of `out` (`img` elements per image). Groups have
/// [`Geom::group`] images and are spread over [`Geom::per_task`] tasks, each of which
/// reuses its two scratch buffers from group to group.
fn per_group<T: Real>(
    out: &mut [T],
    img: usize,
    g: &Geom,
    f: impl Fn(usize, usize, &mut [T], &mut Scratch<T>, &mut Scratch<T>) + Sync,
) {
    let per_task = g.per_task();
    let grp = g.group();
    out.par_chunks_mut(per_task * img)
        .enumerate()
        .for_each(|(t, part)| {
            let mut s1 = Scratch::<T>::new();
            let mut s2 = Scratch::<T>::new();
            for (gi, og) in part.chunks_mut(grp * img).enumerate() {
                let nb = og.len() / img;
                f(t * per_task + gi * grp, nb, og, &mut s1, &mut s2);
            }
        });
}

/// `y [B, Cout, OH, OW]` from `x [B, Cin, H, W]`, `w [Cout, Cin, k, k]`.
pub(super) fn forward<T: Real>(x: &[T], w: &[T], g: &Geom) -> Vec<T> {
    let (kk, ohw, cout) = (g.kk(), g.ohw(), g.cout);
    let img_in = g.cin * g.hw();
    let img_out = cout * ohw;
    // Every group's GEMM (without accumulation) or scatter writes its part.
    let mut y = uninit_vec(g.b * img_out);
    per_group(&mut y, img_out, g, |first, nb, yg, col, tmp| {
        let colp = columns(&x[first * img_in..(first + nb) * img_in], g, nb, col);
        let ld = nb * ohw;
        // One image's [cout, ld] is its output; a group's is scattered to its images.
        let dst = if nb == 1 {
            yg.as_mut_ptr()
        } else {
            tmp.resize(cout * ld, T::ZERO);
            tmp.as_mut_ptr()
        };
        // SAFETY: w is [cout, kk], col is [kk, ld], the destination [cout, ld].
        unsafe {
            mm(
                [cout, ld, kk],
                dst,
                false,
                Operand::new(w.as_ptr(), kk, 1),
                Operand::new(colp, ld, 1),
            )
        };
        if nb > 1 {
            scatter(tmp, cout, ohw, nb, yg);
        }
    });
    y
}

/// `dx [B, Cin, H, W]` from `dy [B, Cout, OH, OW]` and `w`.
fn grad_input<T: Real>(dy: &[T], w: &[T], g: &Geom) -> Vec<T> {
    let mut dx = vec![T::ZERO; g.b * g.cin * g.hw()];
    grad_input_into(dy, w, g, &mut dx);
    dx
}

/// [`grad_input`] added into `dx` (`[B, Cin, H, W]`: zeros, or a partial gradient from
/// another path, like a residual block's shortcut).
pub(super) fn grad_input_into<T: Real>(dy: &[T], w: &[T], g: &Geom, dx: &mut [T]) {
    let (kk, ohw, cout) = (g.kk(), g.ohw(), g.cout);
    let img_in = g.cin * g.hw();
    let img_out = cout * ohw;
    per_group(dx, img_in, g, |first, nb, dxg, dcol, dyg| {
        let dyp = grouped(&dy[first * img_out..(first + nb) * img_out], g, nb, dyg);
        let ld = nb * ohw;
        // One image of a 1x1 stride-1 conv accumulates straight into dx ([cin = kk,
        // hw = ld]); otherwise the column gradient [kk, ld] goes through col2im.
        let direct = nb == 1 && g.identity();
        let dst = if direct {
            dxg.as_mut_ptr()
        } else {
            dcol.resize(kk * ld, T::ZERO);
            dcol.as_mut_ptr()
        };
        // W^T [kk, cout]: row stride 1, column stride kk; dy group [cout, ld].
        // SAFETY: shapes as stated.
        unsafe {
            mm(
                [kk, ld, cout],
                dst,
                direct,
                Operand::new(w.as_ptr(), 1, kk),
                Operand::new(dyp, ld, 1),
            )
        };
        if !direct {
            for i in 0..nb {
                col2im(dcol, g, &mut dxg[i * img_in..(i + 1) * img_in], ld, i * ohw);
            }
        }
    });
}

/// `dw [Cout, Cin, k, k]` = sum over images of `dY col^T`.
pub(super) fn grad_weight<T: Real>(x: &[T], dy: &[T], g: &Geom) -> Vec<T> {
    let (kk, ohw, cout) = (g.kk(), g.ohw(), g.cout);
    let img_in = g.cin * g.hw();
    let img_out = cout * ohw;
    let grp = g.group_of(MIN_COLS_DW);
    let groups = g.b.div_ceil(grp);
    let per_part = groups.div_ceil(PARTS).max(1);
    let parts: Vec<Vec<T>> = (0..PARTS)
        .into_par_iter()
        .filter(|part| part * per_part < groups)
        .map(|part| {
            // The part's first GEMM (no accumulation) writes all of it.
            let mut acc = uninit_vec(kk * cout);
            let mut col = Scratch::<T>::new();
            let mut dyg = Scratch::<T>::new();
            let mut first_done = false;
            for gi in part * per_part..((part + 1) * per_part).min(groups) {
                let first = gi * grp;
                let nb = grp.min(g.b - first);
                let colp = columns(&x[first * img_in..(first + nb) * img_in], g, nb, &mut col);
                let dyp = grouped(
                    &dy[first * img_out..(first + nb) * img_out],
                    g,
                    nb,
                    &mut dyg,
                );
                let ld = nb * ohw;
                // acc = dw^T [kk, cout] (+)= col [kk, ld] x dy^T [ld, cout] (dy^T: rs 1, cs
                // ld). Transposed on purpose: `dy x col^T` makes gemm pack the large col^T
                // against its grain and ran at a quarter of the speed on 32x32 maps.
                // SAFETY: shapes as stated.
                unsafe {
                    mm(
                        [kk, cout, ld],
                        acc.as_mut_ptr(),
                        first_done,
                        Operand::new(colp, ld, 1),
                        Operand::new(dyp, 1, ld),
                    )
                };
                first_done = true;
            }
            acc
        })
        .collect();
    // dw [cout, kk] = the sum of the parts' dw^T [kk, cout], in part order (so results do
    // not depend on the thread count), transposed in the same pass: blocks of 16 output
    // channels in parallel, each reading 16 contiguous values of every part per row.
    const OB: usize = 16;
    let mut dw: Vec<T> = uninit_vec(cout * kk);
    dw.par_chunks_mut(OB * kk.max(1))
        .enumerate()
        .for_each(|(bi, rows)| {
            let (o0, nb) = (bi * OB, rows.len() / kk.max(1));
            for r in 0..kk {
                for j in 0..nb {
                    let mut sum = T::ZERO;
                    for p in &parts {
                        sum += p[r * cout + o0 + j];
                    }
                    rows[j * kk + r] = sum;
                }
            }
        });
    dw
}

/// Which of conv2d's three GEMM passes a [`ConvPass`] runs.
#[derive(Clone, Copy)]
enum Pass {
    /// (x, w) -> y.
    Forward,
    /// (dy, w) -> dx.
    GradInput,
    /// (x, dy) -> dw.
    GradWeight,
}

/// One pass of conv2d for a fixed geometry. The forward's backward runs the other two
/// (without a backward of their own).
struct ConvPass(Geom, Pass);

impl Kernel<2> for ConvPass {
    fn name(&self) -> &'static str {
        match self.1 {
            Pass::Forward => "fast-conv2d",
            Pass::GradInput => "fast-conv2d-grad-input",
            Pass::GradWeight => "fast-conv2d-grad-weight",
        }
    }

    fn run<T: Real>(&self, [a, b]: [&[T]; 2], _: [&[usize]; 2]) -> Result<(Vec<T>, Shape)> {
        let g = &self.0;
        Ok(match self.1 {
            Pass::Forward => (forward(a, b, g), Shape::from((g.b, g.cout, g.oh, g.ow))),
            Pass::GradInput => (grad_input(a, b, g), Shape::from((g.b, g.cin, g.h, g.w))),
            Pass::GradWeight => (grad_weight(a, b, g), Shape::from((g.cout, g.cin, g.k, g.k))),
        })
    }

    fn bwd(&self, [x, w]: [&Tensor; 2], _res: &Tensor, dy: &Tensor) -> Result<[Option<Tensor>; 2]> {
        if !matches!(self.1, Pass::Forward) {
            return Err(candle_core::Error::BackwardNotSupported { op: self.name() });
        }
        let g = self.0;
        let dy = dy.contiguous()?;
        // No input gradient for what needs none (the images): candle would compute and
        // store it all the same.
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(w, &Op(ConvPass(g, Pass::GradInput)))?)
        } else {
            None
        };
        let dw = x.apply_op2_no_bwd(&dy, &Op(ConvPass(g, Pass::GradWeight)))?;
        Ok([dx, Some(dw)])
    }
}

/// `x [B, Cin, H, W]` conv `w [Cout, Cin, k, k]` with `stride` and zero `padding`, as
/// `Tensor::conv2d(w, padding, stride, 1, 1)` computes it, on the CPU with this module's
/// GEMM kernels (forward and both gradients). f32 and f64.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    if !x.device().is_cpu() || !w.device().is_cpu() {
        candle_core::bail!("fast conv2d runs on the CPU only");
    }
    let g = Geom::new(x.dims(), w.dims(), stride, padding)?;
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    x.apply_op2(&w, Op(ConvPass(g, Pass::Forward)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    use crate::test_support::tensors::{
        dtypes, max_abs_diff, rnd, values, weighted_grads, ConvCase,
    };

    // the encoders' shapes in miniature, odd sides,
    // and batches that exercise grouping (small maps) with a ragged last group.
    const CASES: [ConvCase; 8] = [
        (2, 3, 8, 8, 4, 3, 1, 1),
        (3, 2, 7, 5, 3, 3, 2, 1),
        (5, 4, 4, 4, 6, 1, 2, 0),
        (3, 4, 5, 5, 2, 1, 1, 0),
        (2, 3, 11, 9, 4, 7, 2, 3),
        (17, 3, 2, 2, 5, 3, 1, 1),
        (1, 2, 3, 3, 2, 3, 1, 0),
        (9, 2, 3, 4, 3, 1, 1, 0),
    ];

    #[test]
    fn forward_and_gradients_match_candle_conv2d() {
        for (dtype, tol) in dtypes(1e-12, 1e-4) {
            for (i, &(b, cin, h, w, cout, k, s, p)) in CASES.iter().enumerate() {
                let x = Var::from_tensor(&rnd(&[b, cin, h, w], i as u64, dtype)).unwrap();
                let wt = Var::from_tensor(&rnd(&[cout, cin, k, k], 100 + i as u64, dtype)).unwrap();
                let ours = conv2d(x.as_tensor(), wt.as_tensor(), p, s).unwrap();
                let theirs = x.as_tensor().conv2d(wt.as_tensor(), p, s, 1, 1).unwrap();
                assert_eq!(ours.dims(), theirs.dims(), "case {i}");
                assert!(
                    max_abs_diff(&ours, &theirs) < tol,
                    "forward case {i} {dtype:?}"
                );
                let r = rnd(ours.dims(), 200 + i as u64, dtype);
                let (g1, g2) = (weighted_grads(ours, &r), weighted_grads(theirs, &r));
                for (name, v) in [("dx", &x), ("dw", &wt)] {
                    let d = max_abs_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
                    assert!(d < tol * 10.0, "{name} case {i} {dtype:?}: {d}");
                }
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (b, cin, h, w, cout, k, s, p) = (3, 2, 5, 6, 3, 3, 2, 1);
        let x0 = values(&rnd(&[b, cin, h, w], 7, DType::F64));
        let w0 = values(&rnd(&[cout, cin, k, k], 8, DType::F64));
        let d = Device::Cpu;
        let r = rnd(&[b, cout, 3, 3], 9, DType::F64);
        let f = |xv: &[f64], wv: &[f64]| -> f64 {
            let x = Tensor::from_slice(xv, (b, cin, h, w), &d).unwrap();
            let wt = Tensor::from_slice(wv, (cout, cin, k, k), &d).unwrap();
            (conv2d(&x, &wt, p, s).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let x = Var::from_tensor(&Tensor::from_slice(&x0, (b, cin, h, w), &d).unwrap()).unwrap();
        let wt =
            Var::from_tensor(&Tensor::from_slice(&w0, (cout, cin, k, k), &d).unwrap()).unwrap();
        let loss = (conv2d(x.as_tensor(), wt.as_tensor(), p, s).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap();
        let gs = loss.backward().unwrap();
        let gx = values(gs.get(&x).unwrap());
        let gw = values(gs.get(&wt).unwrap());
        let eps = 1e-6;
        for i in (0..x0.len()).step_by(7) {
            let (mut a, mut c) = (x0.clone(), x0.clone());
            a[i] += eps;
            c[i] -= eps;
            let fd = (f(&a, &w0) - f(&c, &w0)) / (2.0 * eps);
            assert!((fd - gx[i]).abs() < 1e-7, "dx[{i}]: {} vs fd {fd}", gx[i]);
        }
        for i in 0..w0.len() {
            let (mut a, mut c) = (w0.clone(), w0.clone());
            a[i] += eps;
            c[i] -= eps;
            let fd = (f(&x0, &a) - f(&x0, &c)) / (2.0 * eps);
            assert!((fd - gw[i]).abs() < 1e-7, "dw[{i}]: {} vs fd {fd}", gw[i]);
        }
    }

    #[test]
    fn rejects_bad_shapes_and_dtypes() {
        let x = rnd(&[1, 3, 4, 4], 1, DType::F32);
        assert!(conv2d(&x, &rnd(&[2, 2, 3, 3], 2, DType::F32), 1, 1).is_err());
        assert!(conv2d(&x, &rnd(&[2, 3, 7, 7], 2, DType::F32), 1, 1).is_err());
        assert!(conv2d(&x, &rnd(&[2, 3, 3, 3], 2, DType::F64), 1, 1).is_err());
    }
}
