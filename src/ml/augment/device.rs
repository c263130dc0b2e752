//! The augmentation pipeline as batched tensor ops on the run's device (`augment.on:
//! device`; docs/ARCHITECTURE.md#ml-core): the training images held there as u8
//! `[N, 3, H, W]`, a batch gathered by index, and every op of `ml::augment` applied to the
//! whole batch at once, on the CPU in tests and on CUDA when the run has a GPU.
//!
//! The parameters are not drawn here: [`augment::draw_pair`] draws them, per (seed, epoch,
//! image, view), from the same streams in the same order as the host pipeline, so a
//! device view is the host view up to float rounding. Images stay in levels (0..255 f32)
//! and are quantised after each op as the host rounds its u8 buffer (`floor(v + 0.5)`,
//! clamped), so the two pipelines agree to one level on every pixel and exactly on most;
//! the tests state the tolerance.
//!
//! How each op batches (per-image parameters become per-image tensors):
//! - resized crop (+ flip): two interpolation matrices per image, `Ry [Ho, H]` and
//!   `Rx [W, Wo]` (bilinear or the antialiased triangle filter, exactly the host's taps;
//!   a flip reverses Rx's columns), `Ry @ X @ Rx` as batched matmuls;
//! - flip and quarter turns: one gather of the flattened pixels per image;
//! - colour jitter: four stages; stage s applies each image's s-th adjustment (its drawn
//!   order), the others at their identity factor, which leaves values bit-identical; hue
//!   through RGB -> HSV -> RGB as elementwise tensor ops, masked per image; grayscale
//!   masked per image;
//! - blur: a reflect-padded gaussian matrix per image and axis (identity where the coin
//!   did not fall), two batched matmuls;
//! - cutout: a mask from index comparisons against each image's square;
//! - Sobel: constant matrices (smoothing and central difference, replicated borders);
//! - noise: the drawn standard normals, uploaded, scaled by each image's sigma.
//!
//! Only square images take quarter turns here (a non-square turn is refused): training
//! images are square (CIFAR's, and the folder's centre crops).

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use crate::ml::augment::{
    self, antialias_taps, bilinear_taps, blur_kernel_size, blur_taps, CropBox, Jitter, OpParams,
    PairParams,
};
use crate::ml::config::AugmentConfig;
use crate::ml::data::ImageSet;

/// BT.601 luma, as the host pipeline (`augment::LUMA`).
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// A training set on a device: u8 `[N, 3, H, W]`.
pub struct DeviceImages {
    pub images: Tensor,
    pub height: usize,
    pub width: usize,
}

impl DeviceImages {
    /// Uploads `set` (HWC u8 on the host) as CHW u8.
    pub fn upload(set: &ImageSet, device: &Device) -> Result<Self> {
        let (h, w) = (set.height, set.width);
        let hwc = Tensor::from_slice(&set.images, (set.len(), h, w, 3), device)?;
        Ok(Self {
            images: hwc.permute((0, 3, 1, 2))?.contiguous()?,
            height: h,
            width: w,
        })
    }

    /// The two views of images `idx` (indices into the set) for `(seed, epoch)`, f32 in
    /// [0, 1], `[n, 3, H, W]` each: what the host loader's `ViewBatch` holds for the same
    /// images, up to rounding. With `pair == false`, view 0 only (the supervised baseline).
    pub fn views(
        &self,
        idx: &[usize],
        aug: &AugmentConfig,
        seed: u64,
        epoch: usize,
        pair: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (h, w) = (self.height, self.width);
        // Drawn on the host's threads (order kept by collect), the noise normals included.
        let params: Vec<PairParams> = idx
            .par_iter()
            .map(|&i| augment::draw_pair(h, w, aug, seed, epoch, i))
            .collect();
        let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(ids, idx.len(), self.images.device())?;
        let x = self.images.index_select(&ids, 0)?.to_dtype(DType::F32)?;
        let views = pair_views(&x, &params, pair)?;
        let scale = |t: Tensor| t.affine(1.0 / 255.0, 0.0);
        Ok((scale(views.0)?, views.1.map(scale).transpose()?))
    }
}

/// Both views (in levels) of the batch `x` (levels, `[n, 3, H, W]`) under `params`.
pub fn pair_views(
    x: &Tensor,
    params: &[PairParams],
    pair: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let base = match params.first().and_then(|p| p.shared_crop) {
        Some(_) => {
            let boxes: Vec<(CropBox, bool)> = params
                .iter()
                .map(|p| (p.shared_crop.expect("one protocol per batch"), false))
                .collect();
            resized_crop(x, &boxes)?
        }
        None => x.clone(),
    };
    let v0_ops: Vec<&[OpParams]> = params.iter().map(|p| p.view0.as_slice()).collect();
    let v0 = apply_views(&base, &v0_ops)?;
    if !pair {
        return Ok((v0, None));
    }
    let v1 = match params.first().and_then(|p| p.view1.as_ref()) {
        Some(_) => {
            let ops: Vec<&[OpParams]> = params
                .iter()
                .map(|p| p.view1.as_deref().expect("one protocol per batch"))
                .collect();
            apply_views(x, &ops)?
        }
        None => base,
    };
    Ok((v0, Some(v1)))
}

/// Each image's ops in order; every image of a batch has the same op at each position
/// (one `augment.ops` list), with its own parameters.
pub fn apply_views(x: &Tensor, ops: &[&[OpParams]]) -> Result<Tensor> {
    let len = ops.first().map_or(0, |o| o.len());
    let mut cur = x.clone();
    for j in 0..len {
        let at: Vec<&OpParams> = ops.iter().map(|o| &o[j]).collect();
        cur = apply_op(&cur, &at)?;
    }
    Ok(cur)
}

/// One op over the batch, image k with `ps[k]` (all of the same kind).
pub fn apply_op(x: &Tensor, ps: &[&OpParams]) -> Result<Tensor> {
    let kind = |p: &OpParams| std::mem::discriminant(p);
    if ps.iter().any(|p| kind(p) != kind(ps[0])) {
        candle_core::bail!("one op per position of a batch");
    }
    macro_rules! each {
        ($pat:pat => $e:expr) => {
            ps.iter()
                .map(|p| match p {
                    $pat => $e,
                    _ => unreachable!("checked above"),
                })
                .collect::<Vec<_>>()
        };
    }
    match ps[0] {
        OpParams::Crop(..) => resized_crop(x, &each!(OpParams::Crop(b, f) => (*b, *f))),
        OpParams::Flip(_) => flip(x, &each!(OpParams::Flip(f) => *f)),
        OpParams::Color(..) => color(x, &each!(OpParams::Color(j, g) => (*j, *g))),
        OpParams::Blur(_) => blur(x, &each!(OpParams::Blur(s) => *s)),
        OpParams::Cutout(..) => cutout(x, &each!(OpParams::Cutout(t, l, s) => (*t, *l, *s))),
        OpParams::Sobel => sobel(x),
        OpParams::Noise(..) => noise(x, &each!(OpParams::Noise(s, n) => (*s, n.as_slice()))),
        OpParams::Rotate(_) => rotate(x, &each!(OpParams::Rotate(k) => *k)),
    }
}

/// The host's rounding of a level into a u8: `(v + 0.5) as u8`, i.e. floor, saturating.
fn quantise(x: &Tensor) -> Result<Tensor> {
    (x + 0.5)?.clamp(0f32, 255f32)?.floor()
}

fn dims(x: &Tensor) -> Result<(usize, usize, usize)> {
    let (n, c, h, w) = x.dims4()?;
    if c != 3 {
        candle_core::bail!("augmentation expects [n, 3, H, W], got {:?}", x.shape());
    }
    Ok((n, h, w))
}

/// Row-major `rows x cols` matrices, one per image, as `[n, 1, rows, cols]`.
fn matrices(m: Vec<f32>, n: usize, rows: usize, cols: usize, dev: &Device) -> Result<Tensor> {
    Tensor::from_vec(m, (n, 1, rows, cols), dev)
}

/// Interpolation weights `[n_out, n_in]` of one axis of a resized crop: the box spans
/// `start .. start + len` of an axis of `n_in`; mirrored when `flip`.
fn axis_weights(
    start: usize,
    len: usize,
    n_out: usize,
    n_in: usize,
    aa: bool,
    flip: bool,
) -> Vec<f32> {
    let mut m = vec![0f32; n_out * n_in];
    if aa {
        for (o, (lo, ws)) in antialias_taps(n_out, len).into_iter().enumerate() {
            for (k, wt) in ws.into_iter().enumerate() {
                m[o * n_in + start + lo + k] += wt;
            }
        }
    } else {
        for (o, (i0, i1, f)) in bilinear_taps(n_out, len).into_iter().enumerate() {
            m[o * n_in + start + i0] += 1.0 - f;
            m[o * n_in + start + i1] += f;
        }
    }
    if flip {
        let rows: Vec<&[f32]> = m.chunks_exact(n_in).rev().collect();
        m = rows.concat();
    }
    m
}

/// Resized crop of each image's box back to the image's size, mirrored per image.
pub fn resized_crop(x: &Tensor, boxes: &[(CropBox, bool)]) -> Result<Tensor> {
    let (n, h, w) = dims(x)?;
    let (mut ry, mut rxt) = (Vec::with_capacity(n * h * h), Vec::with_capacity(n * w * w));
    for &(b, flip) in boxes {
        let aa = augment::shrinks(b, h, w);
        ry.extend(axis_weights(b.top, b.height, h, h, aa, false));
        // Rx transposed: [W_in, W_out], so that X @ Rx^T resamples the columns.
        let rx = axis_weights(b.left, b.width, w, w, aa, flip);
        let mut t = vec![0f32; w * w];
        for o in 0..w {
            for i in 0..w {
                t[i * w + o] = rx[o * w + i];
            }
        }
        rxt.extend(t);
    }
    let dev = x.device();
    let ry = matrices(ry, n, h, h, dev)?;
    let rxt = matrices(rxt, n, w, w, dev)?;
    quantise(&ry.broadcast_matmul(&x.broadcast_matmul(&rxt)?)?)
}

/// Gathers each image's pixels from flattened source indices `src[k]` (`h * w` each).
fn gather_pixels(x: &Tensor, src: Vec<u32>) -> Result<Tensor> {
    let (n, h, w) = dims(x)?;
    let idx = Tensor::from_vec(src, (n, 1, h * w), x.device())?.repeat((1, 3, 1))?;
    x.reshape((n, 3, h * w))?
        .contiguous()?
        .gather(&idx, 2)?
        .reshape((n, 3, h, w))
}

/// Horizontal flip of the images whose flag is set.
pub fn flip(x: &Tensor, flips: &[bool]) -> Result<Tensor> {
    let (_, h, w) = dims(x)?;
    let mut src = Vec::with_capacity(flips.len() * h * w);
    for &f in flips {
        for y in 0..h {
            for c in 0..w {
                src.push((y * w + if f { w - 1 - c } else { c }) as u32);
            }
        }
    }
    gather_pixels(x, src)
}

/// Quarter turns counter-clockwise (numpy's rot90), `ks[k]` for image k; square images.
pub fn rotate(x: &Tensor, ks: &[usize]) -> Result<Tensor> {
    let (_, h, w) = dims(x)?;
    if h != w && ks.iter().any(|k| k % 2 == 1) {
        candle_core::bail!("a quarter turn on the device needs square images, got {h}x{w}");
    }
    let mut src = Vec::with_capacity(ks.len() * h * w);
    for &k in ks {
        for i in 0..h {
            for j in 0..w {
                let (sy, sx) = match k % 4 {
                    0 => (i, j),
                    1 => (j, w - 1 - i),
                    2 => (h - 1 - i, w - 1 - j),
                    _ => (h - 1 - j, i),
                };
                src.push((sy * w + sx) as u32);
            }
        }
    }
    gather_pixels(x, src)
}

/// A per-image scalar as `[n, 1, 1, 1]`.
fn per_image(v: Vec<f32>, dev: &Device) -> Result<Tensor> {
    let n = v.len();
    Tensor::from_vec(v, (n, 1, 1, 1), dev)
}

/// Luma `[n, 1, H, W]` of `x` `[n, 3, H, W]`.
fn luma(x: &Tensor) -> Result<Tensor> {
    let r = (x.narrow(1, 0, 1)? * LUMA[0] as f64)?;
    let g = (x.narrow(1, 1, 1)? * LUMA[1] as f64)?;
    let b = (x.narrow(1, 2, 1)? * LUMA[2] as f64)?;
    (r + g)? + b
}

/// Colour distortion: each image's jitter (in its drawn order) if any, then grayscale
/// where drawn.
pub fn color(x: &Tensor, ps: &[(Option<[Jitter; 4]>, bool)]) -> Result<Tensor> {
    let dev = x.device();
    let mut y = x.affine(1.0 / 255.0, 0.0)?;
    for stage in 0..4 {
        let (mut bf, mut cf, mut sf, mut hue, mut hue_on) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (j, _) in ps {
            let op = j.map(|ops| ops[stage]);
            bf.push(match op {
                Some(Jitter::Brightness(f)) => f,
                _ => 1.0,
            });
            cf.push(match op {
                Some(Jitter::Contrast(f)) => f,
                _ => 1.0,
            });
            sf.push(match op {
                Some(Jitter::Saturation(f)) => f,
                _ => 1.0,
            });
            let h = match op {
                Some(Jitter::Hue(f)) => Some(f),
                _ => None,
            };
            hue.push(h.unwrap_or(0.0));
            hue_on.push(if h.is_some() { 1f32 } else { 0.0 });
        }
        // Each image's stage-s adjustment; the other three at their identity factor
        // (x * 1 + 0 * m is x exactly, and hue is masked).
        let bf = per_image(bf, dev)?;
        y = y.broadcast_mul(&bf)?.clamp(0f32, 1f32)?;
        let cf = per_image(cf, dev)?;
        let mean = luma(&y)?
            .flatten_from(1)?
            .mean_keepdim(1)?
            .unsqueeze(2)?
            .unsqueeze(3)?;
        let add = cf.affine(-1.0, 1.0)?.mul(&mean)?;
        y = y
            .broadcast_mul(&cf)?
            .broadcast_add(&add)?
            .clamp(0f32, 1f32)?;
        let sf = per_image(sf, dev)?;
        let g = luma(&y)?.broadcast_mul(&sf.affine(-1.0, 1.0)?)?;
        y = y.broadcast_mul(&sf)?.broadcast_add(&g)?.clamp(0f32, 1f32)?;
        if hue_on.iter().any(|&v| v > 0.0) {
            let shifted = hue_shift(&y, &per_image(hue, dev)?)?;
            let on = per_image(hue_on, dev)?.broadcast_as(y.shape())?.ne(0f32)?;
            y = on.where_cond(&shifted, &y)?;
        }
    }
    // Images without jitter go through x / 255 * 255, which rounds back to x.
    let y = (y * 255.0)?.affine(1.0, 0.5)?.floor()?;
    let gray: Vec<f32> = ps.iter().map(|(_, g)| if *g { 1.0 } else { 0.0 }).collect();
    if !gray.iter().any(|&g| g > 0.0) {
        return Ok(y);
    }
    let l = (luma(&y)? + 0.5)?
        .minimum(255f32)?
        .floor()?
        .repeat((1, 3, 1, 1))?;
    let on = per_image(gray, dev)?.broadcast_as(y.shape())?.ne(0f32)?;
    on.where_cond(&l, &y)
}

/// torchvision's `adjust_hue` on values in [0, 1]: hue += shift (mod 1), value and chroma
/// kept; grey pixels (chroma 0) unchanged. `shift` is `[n, 1, 1, 1]`.
fn hue_shift(x: &Tensor, shift: &Tensor) -> Result<Tensor> {
    let r = x.narrow(1, 0, 1)?;
    let g = x.narrow(1, 1, 1)?;
    let b = x.narrow(1, 2, 1)?;
    let mx = r.maximum(&g)?.maximum(&b)?;
    let mn = r.minimum(&g)?.minimum(&b)?;
    let c = (&mx - &mn)?;
    let grey = c.le(0f32)?;
    let c_safe = grey.where_cond(&c.ones_like()?, &c)?;
    // The host's sector order: red is the max first, then green, then blue.
    let h_r = ((&g - &b)? / &c_safe)?;
    let h_g = (((&b - &r)? / &c_safe)? + 2.0)?;
    let h_b = (((&r - &g)? / &c_safe)? + 4.0)?;
    let is_r = mx.eq(&r)?;
    let is_g = mx.eq(&g)?;
    let h6 = is_r.where_cond(&h_r, &is_g.where_cond(&h_g, &h_b)?)?;
    let h6 = h6.broadcast_add(&(shift * 6.0)?)?;
    // Into [0, 6).
    let h6 = (&h6 - ((&h6 / 6.0)?.floor()? * 6.0)?)?;
    let h6 = h6.ge(6f32)?.where_cond(&(&h6 - 6.0)?, &h6)?;
    let i = h6.floor()?.minimum(5f32)?;
    let f = (&h6 - &i)?;
    let p = mn.clone();
    let q = (&mx - (&c * &f)?)?;
    let t = (&mn + (&c * &f)?)?;
    // Per sector i: (r, g, b) = (mx,t,p) (q,mx,p) (p,mx,t) (p,q,mx) (t,p,mx) (mx,p,q).
    let pick = |vals: [&Tensor; 6]| -> Result<Tensor> {
        let mut out = vals[5].clone();
        for k in (0..5).rev() {
            out = i.eq(k as f32)?.where_cond(vals[k], &out)?;
        }
        Ok(out)
    };
    let nr = pick([&mx, &q, &p, &p, &t, &mx])?;
    let ng = pick([&t, &mx, &mx, &q, &p, &p])?;
    let nb = pick([&p, &p, &t, &mx, &mx, &q])?;
    let out = Tensor::cat(&[nr, ng, nb], 1)?;
    grey.repeat((1, 3, 1, 1))?.where_cond(x, &out)
}

/// Gaussian blur with each image's sigma (none: unchanged), kernel
/// [`blur_kernel_size`] of the height, reflect padding.
pub fn blur(x: &Tensor, sigmas: &[Option<f32>]) -> Result<Tensor> {
    if sigmas.iter().all(|s| s.is_none()) {
        return Ok(x.clone());
    }
    let (n, h, w) = dims(x)?;
    let kernel = blur_kernel_size(h);
    // Vertical [H_out, H_in] and horizontal transposed [W_in, W_out] per image.
    let (mut by, mut bxt) = (Vec::with_capacity(n * h * h), Vec::with_capacity(n * w * w));
    for s in sigmas {
        let mut my = vec![0f32; h * h];
        let mut mxt = vec![0f32; w * w];
        match s {
            Some(sigma) => {
                let (k, ys) = blur_taps(kernel, h, *sigma);
                for (o, taps) in ys.iter().enumerate() {
                    for (kv, &i) in k.iter().zip(taps) {
                        my[o * h + i] += kv;
                    }
                }
                let (k, xs) = blur_taps(kernel, w, *sigma);
                for (o, taps) in xs.iter().enumerate() {
                    for (kv, &i) in k.iter().zip(taps) {
                        mxt[i * w + o] += kv;
                    }
                }
            }
            None => {
                for i in 0..h {
                    my[i * h + i] = 1.0;
                }
                for i in 0..w {
                    mxt[i * w + i] = 1.0;
                }
            }
        }
        by.extend(my);
        bxt.extend(mxt);
    }
    let dev = x.device();
    let by = matrices(by, n, h, h, dev)?;
    let bxt = matrices(bxt, n, w, w, dev)?;
    quantise(&by.broadcast_matmul(&x.broadcast_matmul(&bxt)?)?)
}

/// One black square per image: (top, left, side).
pub fn cutout(x: &Tensor, squares: &[(usize, usize, usize)]) -> Result<Tensor> {
    let (_, h, w) = dims(x)?;
    let dev = x.device();
    let col = |f: fn(&(usize, usize, usize)) -> usize| -> Result<Tensor> {
        per_image(squares.iter().map(|s| f(s) as f32).collect(), dev)
    };
    let (top, left) = (col(|s| s.0)?, col(|s| s.1)?);
    let side = col(|s| s.2)?;
    let ys = Tensor::arange(0f32, h as f32, dev)?.reshape((1, 1, h, 1))?;
    let xs = Tensor::arange(0f32, w as f32, dev)?.reshape((1, 1, 1, w))?;
    let inside = |pos: &Tensor, lo: &Tensor| -> Result<Tensor> {
        let hi = (lo + &side)?;
        pos.broadcast_ge(lo)?
            .to_dtype(DType::F32)?
            .broadcast_mul(&pos.broadcast_lt(&hi)?.to_dtype(DType::F32)?)
    };
    let hole = inside(&ys, &top)?.broadcast_mul(&inside(&xs, &left)?)?; // [n, 1, H, W]
    let keep = hole.affine(-1.0, 1.0)?;
    x.broadcast_mul(&keep)
}

/// Sobel gradient magnitude of the luma, replicated borders, / 4, in all three channels.
pub fn sobel(x: &Tensor) -> Result<Tensor> {
    let (_, h, w) = dims(x)?;
    let dev = x.device();
    let smooth = [(-1isize, 1f32), (0, 2.0), (1, 1.0)];
    let clamp = |i: isize, len: usize| i.clamp(0, len as isize - 1) as usize;
    // Along rows (left multiplication, [H, H]) and columns (right, transposed [W, W]).
    let mut sv = vec![0f32; h * h];
    let mut dv = vec![0f32; h * h];
    for y in 0..h {
        for (d, s) in smooth {
            sv[y * h + clamp(y as isize + d, h)] += s;
        }
        dv[y * h + clamp(y as isize + 1, h)] += 1.0;
        dv[y * h + clamp(y as isize - 1, h)] -= 1.0;
    }
    let mut sht = vec![0f32; w * w];
    let mut dht = vec![0f32; w * w];
    for c in 0..w {
        for (d, s) in smooth {
            sht[clamp(c as isize + d, w) * w + c] += s;
        }
        dht[clamp(c as isize + 1, w) * w + c] += 1.0;
        dht[clamp(c as isize - 1, w) * w + c] -= 1.0;
    }
    let m = |v: Vec<f32>, r: usize, c: usize| Tensor::from_vec(v, (1, 1, r, c), dev);
    let l = luma(x)?;
    let gx = m(sv, h, h)?.broadcast_matmul(&l.broadcast_matmul(&m(dht, w, w)?)?)?;
    let gy = m(dv, h, h)?.broadcast_matmul(&l.broadcast_matmul(&m(sht, w, w)?)?)?;
    let mag = (gx.sqr()? + gy.sqr()?)?.sqrt()?;
    let out = (mag * 0.25)?.affine(1.0, 0.5)?.minimum(255f32)?.floor()?;
    out.repeat((1, 3, 1, 1))
}

/// Gaussian noise: image k plus `sigma_k` times its drawn standard normals (HWC order),
/// rounded and clipped.
pub fn noise(x: &Tensor, ps: &[(f32, &[f32])]) -> Result<Tensor> {
    let (n, h, w) = dims(x)?;
    let dev = x.device();
    let mut normals = Vec::with_capacity(n * h * w * 3);
    for (_, v) in ps {
        normals.extend_from_slice(v);
    }
    let normals = Tensor::from_vec(normals, (n, h, w, 3), dev)?.permute((0, 3, 1, 2))?;
    let sigma = per_image(ps.iter().map(|p| p.0).collect(), dev)?;
    let y = (x + normals.broadcast_mul(&sigma)?)?;
    quantise(&y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::augment::{
        apply_params, draw_blur, draw_color, draw_cutout, draw_noise, sample_crop_box, view_rng,
    };
    use crate::ml::config::{AugOp, AugProtocol};
    use crate::ml::data::to_chw;
    use rand::Rng;

    const N: usize = 8;
    const S: usize = 32;

    /// N varied 32x32 HWC images: smooth gradients plus noise, one flat grey, one with
    /// saturated colours (so hue, grey and clipping paths are all taken).
    fn images() -> Vec<Vec<u8>> {
        let mut rng = view_rng(11, 0, 0, 0);
        (0..N)
            .map(|k| {
                (0..S * S * 3)
                    .map(|i| {
                        let (p, c) = (i / 3, i % 3);
                        let (y, x) = (p / S, p % S);
                        match k {
                            0 => 128,
                            1 => [255, 0, 40][c],
                            _ => {
                                ((x * (3 + c * k) + y * (5 + k) + c * 60) % 256) as u8 / 2
                                    + rng.gen_range(0..128u8)
                            }
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The images as a device batch in levels, [N, 3, S, S].
    fn batch(imgs: &[Vec<u8>]) -> Tensor {
        let flat: Vec<f32> = imgs.iter().flatten().map(|&v| v as f32).collect();
        Tensor::from_vec(flat, (imgs.len(), S, S, 3), &Device::Cpu)
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap()
            .contiguous()
            .unwrap()
    }

    /// Device output back to HWC u8 per image.
    fn host(t: &Tensor) -> Vec<Vec<u8>> {
        let v: Vec<f32> = t
            .permute((0, 2, 3, 1))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        v.chunks_exact(S * S * 3)
            .map(|c| {
                c.iter()
                    .map(|&x| {
                        assert!(x.fract() == 0.0 && (0.0..=255.0).contains(&x), "{x}");
                        x as u8
                    })
                    .collect()
            })
            .collect()
    }

    /// (largest difference in levels, values that differ) between two image lists.
    fn compare(a: &[Vec<u8>], b: &[Vec<u8>]) -> (u8, usize) {
        let mut worst = 0;
        let mut differ = 0;
        for (x, y) in a.iter().zip(b) {
            for (p, q) in x.iter().zip(y) {
                let d = p.abs_diff(*q);
                worst = worst.max(d);
                differ += usize::from(d > 0);
            }
        }
        (worst, differ)
    }

    /// Every device op on fixed parameters against the host op on the same parameters.
    /// Tolerance: index ops (flip, turns, cutout) exact; the arithmetic ops within one
    /// level, on at most 1% of the values (float sums in another order can put a value
    /// on the other side of a rounding boundary).
    #[test]
    fn each_device_op_matches_the_host_op_on_fixed_parameters() {
        let imgs = images();
        let x = batch(&imgs);
        let mut r = view_rng(5, 1, 2, 0);
        let cases: Vec<(&str, Vec<OpParams>, bool)> = vec![
            (
                "crop",
                (0..N)
                    .map(|k| OpParams::Crop(sample_crop_box(S, S, 0.08, &mut r), k % 2 == 0))
                    .collect(),
                false,
            ),
            (
                "flip",
                (0..N).map(|k| OpParams::Flip(k % 3 == 0)).collect(),
                true,
            ),
            (
                "color",
                (0..N)
                    .map(|k| {
                        let (j, g) = draw_color(1.0, &mut r);
                        // Every image jittered but one, grey on a few.
                        OpParams::Color(
                            if k == 3 {
                                None
                            } else {
                                j.or(Some(sample(&mut r)))
                            },
                            g || k == 5,
                        )
                    })
                    .collect(),
                false,
            ),
            (
                "blur",
                (0..N)
                    .map(|k| {
                        OpParams::Blur(if k == 2 {
                            None
                        } else {
                            draw_blur(&mut r).or(Some(0.1 + k as f32 * 0.25))
                        })
                    })
                    .collect(),
                false,
            ),
            (
                "cutout",
                (0..N)
                    .map(|_| {
                        let (t, l, s) = draw_cutout(S, S, &mut r);
                        OpParams::Cutout(t, l, s)
                    })
                    .collect(),
                true,
            ),
            ("sobel", vec![OpParams::Sobel; N], false),
            (
                "noise",
                (0..N)
                    .map(|_| {
                        let (s, n) = draw_noise(S * S * 3, &mut r);
                        OpParams::Noise(s, n)
                    })
                    .collect(),
                false,
            ),
            (
                "rotate",
                (0..N).map(|k| OpParams::Rotate(k % 4)).collect(),
                true,
            ),
        ];
        for (name, ps, exact) in cases {
            let want: Vec<Vec<u8>> = imgs
                .iter()
                .zip(&ps)
                .map(|(img, p)| {
                    let (mut buf, mut scratch) = (img.clone(), vec![0u8; img.len()]);
                    apply_params(p, &mut buf, &mut scratch, S, S);
                    buf
                })
                .collect();
            let refs: Vec<&OpParams> = ps.iter().collect();
            let got = host(&apply_op(&x, &refs).unwrap());
            let (worst, differ) = compare(&got, &want);
            if exact {
                assert_eq!((worst, differ), (0, 0), "{name}");
            } else {
                assert!(worst <= 1, "{name}: {worst} levels apart");
                assert!(
                    differ * 100 <= N * S * S * 3,
                    "{name}: {differ} values differ"
                );
            }
            assert!(
                want.iter().zip(&imgs).any(|(a, b)| a != b),
                "{name} changed nothing"
            );
        }
    }

    fn sample(r: &mut rand_chacha::ChaCha8Rng) -> [Jitter; 4] {
        augment::sample_jitter(1.0, r)
    }

    /// Whole views: the device pipeline against the host pipeline (`augment_pair`, then
    /// the loader's CHW f32), for SimCLR's default ops, every Figure 5 op under the
    /// paper's one-branch protocol, and one pair. Chained ops can carry a one-level
    /// difference into the next op (colour factors up to 1.8 can double it): within 3
    /// levels, on at most 1% of the values.
    #[test]
    fn device_views_match_the_host_pipelines_views() {
        let imgs = images();
        let set = ImageSet {
            images: imgs.concat(),
            labels: vec![0; N],
            height: S,
            width: S,
            num_classes: 1,
            class_names: vec!["a".into()],
        };
        let dev = DeviceImages::upload(&set, &Device::Cpu).unwrap();
        let idx: Vec<usize> = vec![5, 0, 7, 1, 3, 2];
        let mut cases = vec![AugmentConfig::default()];
        for op in AugOp::FIGURE5 {
            cases.push(AugmentConfig {
                protocol: AugProtocol::OneBranch,
                ops: vec![op],
                ..AugmentConfig::default()
            });
        }
        cases.push(AugmentConfig {
            protocol: AugProtocol::OneBranchRaw,
            ops: vec![AugOp::Crop, AugOp::Blur],
            ..AugmentConfig::default()
        });
        cases.push(AugmentConfig {
            ops: vec![AugOp::Crop, AugOp::Flip, AugOp::Color, AugOp::Blur],
            crop_flip: false,
            color_strength: 1.0,
            ..AugmentConfig::default()
        });
        for aug in &cases {
            for epoch in 0..2 {
                let (v0, v1) = dev.views(&idx, aug, 3, epoch, true).unwrap();
                let (mut w0, mut w1) = (Vec::new(), Vec::new());
                for &i in &idx {
                    let (a, b) = augment::augment_pair(set.image(i), S, S, aug, 3, epoch, i);
                    let mut c = vec![0f32; 3 * S * S];
                    to_chw(&a, &mut c, S * S);
                    w0.extend(c.iter().copied());
                    to_chw(&b, &mut c, S * S);
                    w1.extend(c);
                }
                for (got, want) in [(v0, w0), (v1.unwrap(), w1)] {
                    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
                    assert_eq!(got.len(), want.len());
                    let mut differ = 0;
                    for (g, w) in got.iter().zip(&want) {
                        let d = (g - w).abs() * 255.0;
                        assert!(d <= 3.0 + 1e-3, "{:?}: {d} levels apart", aug.ops);
                        differ += usize::from(d > 1e-3);
                    }
                    assert!(differ * 100 <= want.len(), "{:?}: {differ} differ", aug.ops);
                }
            }
        }
        // One view only (the supervised baseline): view 0 of the pair.
        let aug = AugmentConfig::default();
        let (single, none) = dev.views(&idx, &aug, 3, 1, false).unwrap();
        assert!(none.is_none());
        let (pair0, _) = dev.views(&idx, &aug, 3, 1, true).unwrap();
        assert_eq!(
            single.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            pair0.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
