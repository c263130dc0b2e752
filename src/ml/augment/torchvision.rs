//! Our augmentation ops (src/ml/augment.rs) against torchvision's (tests only).
//!
//! `bench/augment_goldens.py` writes `augment_goldens.json`: torchvision
//! `transforms.v2.functional` outputs on uint8 tensors for fixed parameters on fixed images,
//! and the statistics of `RandomResizedCrop.get_params` over 200,000 draws. The tests run
//! our ops on the same inputs and assert agreement: exact where both sides compute the same
//! thing, within one uint8 level where torchvision quantises differently (its uint8 kernels
//! truncate after every op; ours compute in f32 and round once, as the official SimCLR
//! code works on float images), and within a stated bound where we differ on purpose.

use serde::Deserialize;

use crate::ml::augment::{
    color_distort, gaussian_blur, grayscale, hflip, jitter, random_blur, resized_crop,
    sample_crop_box, sample_jitter, view_rng, CropBox, Jitter,
};

#[derive(Deserialize)]
struct Goldens {
    torchvision: String,
    resized_crop: Resize,
    hflip: String,
    color: Vec<ColorCase>,
    jitter_chain: Vec<Chain>,
    grayscale3: String,
    gaussian_blur: Blur,
    crop_params: CropParams,
}

#[derive(Deserialize)]
struct Resize {
    src_h: usize,
    src_w: usize,
    out_h: usize,
    out_w: usize,
    cases: Vec<ResizeCase>,
}

#[derive(Deserialize)]
struct ResizeCase {
    top: usize,
    left: usize,
    height: usize,
    width: usize,
    flip: bool,
    out: String,
}

#[derive(Deserialize)]
struct ColorCase {
    op: String,
    factor: f32,
    out: String,
}

#[derive(Deserialize)]
struct Chain {
    order: Vec<usize>,
    factors: [f32; 4],
    out: String,
}

#[derive(Deserialize)]
struct Blur {
    h: usize,
    w: usize,
    kernel_size: usize,
    cases: Vec<BlurCase>,
}

#[derive(Deserialize)]
struct BlurCase {
    sigma: f32,
    out: String,
}

#[derive(Deserialize)]
struct CropParams {
    h: usize,
    w: usize,
    scale: [f64; 2],
    quantiles: Vec<f64>,
    area_fraction: Vec<f64>,
    aspect: Vec<f64>,
    area_mean: f64,
    aspect_mean: f64,
    full_image: f64,
    centre_x_mean: f64,
    centre_x_std: f64,
    centre_y_std: f64,
}

fn goldens() -> Goldens {
    serde_json::from_str(include_str!("augment_goldens.json")).unwrap()
}

/// The generator's `pattern(h, w)`: byte k = (k * 2654435761 mod 2^32) >> 24, every 7th
/// pixel grey (its red value in all three channels).
fn pattern(h: usize, w: usize) -> Vec<u8> {
    let mut img: Vec<u8> = (0..h * w * 3)
        .map(|k| (((k as u64 * 2_654_435_761) % (1 << 32)) >> 24) as u8)
        .collect();
    for p in img.chunks_exact_mut(3).step_by(7) {
        let r = p[0];
        p.fill(r);
    }
    img
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// (max |ours - theirs|, number of values that differ).
fn diff(ours: &[u8], theirs: &[u8]) -> (u8, usize) {
    assert_eq!(ours.len(), theirs.len());
    ours.iter().zip(theirs).fold((0, 0), |(m, n), (a, b)| {
        (m.max(a.abs_diff(*b)), n + usize::from(a != b))
    })
}

/// `theirs` (hex) against `ours`: panics with the case name unless max |diff| <= `bound`.
fn assert_within(what: &str, ours: &[u8], theirs: &str, bound: u8) -> (u8, usize) {
    let (max, n) = diff(ours, &unhex(theirs));
    assert!(
        max <= bound,
        "{what}: max |ours - torchvision| = {max} > {bound} ({n} values differ)"
    );
    (max, n)
}

#[test]
fn goldens_come_from_the_torchvision_the_docs_name() {
    // README's twin section and the module doc above cite this version.
    assert!(goldens().torchvision.starts_with("0.29."));
}

/// RandomResizedCrop's resize: bilinear, antialias=True. Ours computes in f32 and rounds
/// once; torch's uint8 kernel works in fixed point and rounds after each axis: one level.
/// A box of the output's size is returned as is on both sides: exact.
#[test]
fn resized_crop_matches_torchvision_up_and_down_within_one_level() {
    let g = goldens();
    let r = &g.resized_crop;
    let src = pattern(r.src_h, r.src_w);
    let mut shrinking = 0;
    for c in &r.cases {
        let b = CropBox {
            top: c.top,
            left: c.left,
            height: c.height,
            width: c.width,
        };
        let mut out = Vec::new();
        resized_crop(
            &src,
            [r.src_h, r.src_w],
            b,
            [r.out_h, r.out_w],
            c.flip,
            &mut out,
        );
        let exact = c.height == r.out_h && c.width == r.out_w && !c.flip;
        let what = format!("{b:?} flip {}", c.flip);
        assert_within(&what, &out, &c.out, if exact { 0 } else { 1 });
        shrinking += usize::from(c.height > r.out_h || c.width > r.out_w);
    }
    assert!(shrinking >= 2, "the goldens cover downscaling");
}

#[test]
fn hflip_and_gaussian_blur_match_torchvision_exactly() {
    let g = goldens();
    let mut img = pattern(8, 8);
    hflip(&mut img, 8);
    assert_within("hflip", &img, &g.hflip, 0);
    // Same kernel (exp(-x^2 / 2 sigma^2), normalised), reflect padding, f32, one rounding.
    let b = &g.gaussian_blur;
    for c in &b.cases {
        let mut img = pattern(b.h, b.w);
        gaussian_blur(&mut img, b.h, b.w, c.sigma);
        assert_eq!(crate::ml::augment::blur_kernel_size(32), b.kernel_size);
        assert_eq!(crate::ml::augment::blur_kernel_size(b.h), b.kernel_size);
        assert_within(&format!("blur sigma {}", c.sigma), &img, &c.out, 0);
    }
}

/// One adjustment at a time. torchvision's uint8 kernels truncate the blended value
/// (`_blend(...).to(uint8)`), take contrast's mean over the truncated grey image, and turn
/// hue's float result back with x 255.999 and truncation; ours rounds once (the official
/// code works on float images): at most one level, none for neutral factors.
#[test]
fn colour_adjustments_and_grayscale_match_torchvision_within_one_level() {
    let g = goldens();
    let img = pattern(8, 8);
    for c in &g.color {
        let op = match c.op.as_str() {
            "brightness" => Jitter::Brightness(c.factor),
            "contrast" => Jitter::Contrast(c.factor),
            "saturation" => Jitter::Saturation(c.factor),
            "hue" => Jitter::Hue(c.factor),
            other => panic!("unknown op {other}"),
        };
        let mut a = img.clone();
        jitter(&mut a, &[op]);
        let neutral = matches!(op, Jitter::Hue(f) if f == 0.0)
            || matches!(op, Jitter::Brightness(f) if f == 1.0);
        assert_within(&format!("{op:?}"), &a, &c.out, if neutral { 0 } else { 1 });
    }
    let mut grey = img.clone();
    grayscale(&mut grey);
    assert_within("grayscale", &grey, &g.grayscale3, 1);
}

/// A whole ColorJitter draw (four adjustments in a fixed order). torchvision truncates
/// after each of the four, each pulling values down by up to one level; ours rounds once
/// at the end: at most three levels apart on these draws (measured 2-3).
#[test]
fn a_whole_jitter_draw_stays_within_three_levels_of_torchvision() {
    for c in &goldens().jitter_chain {
        let [b, co, s, h] = c.factors;
        let all = [
            Jitter::Brightness(b),
            Jitter::Contrast(co),
            Jitter::Saturation(s),
            Jitter::Hue(h),
        ];
        let ops: Vec<Jitter> = c.order.iter().map(|&k| all[k]).collect();
        let mut a = pattern(8, 8);
        jitter(&mut a, &ops);
        assert_within(&format!("{ops:?}"), &a, &c.out, 3);
    }
}

/// The q-quantile of `v` as numpy's default (linear interpolation between order statistics).
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    v[i] + (v[(i + 1).min(v.len() - 1)] - v[i]) * f
}

/// Our crop-box sampler against 200,000 draws of `RandomResizedCrop.get_params` on 32 x 32
/// (scale (0.08, 1), ratio (3/4, 4/3)): the same quantiles of the area fraction and the
/// aspect ratio, the same means, the same share of whole-image boxes, and the same spread
/// of box centres. Tolerances are about five standard errors at 200,000 draws.
#[test]
fn crop_boxes_are_distributed_as_torchvision_get_params() {
    let p = goldens().crop_params;
    let (h, w) = (p.h, p.w);
    assert_eq!(p.scale[1], 1.0);
    let mut rng = view_rng(11, 0, 0, 0);
    let n = 200_000;
    let (mut area, mut aspect, mut cx, mut cy) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let b = sample_crop_box(h, w, p.scale[0], &mut rng);
        area.push((b.height * b.width) as f64 / (h * w) as f64);
        aspect.push(b.width as f64 / b.height as f64);
        cx.push((b.left as f64 + b.width as f64 / 2.0) / w as f64);
        cy.push((b.top as f64 + b.height as f64 / 2.0) / h as f64);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let std = |v: &[f64]| {
        let m = mean(v);
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
    };
    let close = |what: &str, ours: f64, theirs: f64, tol: f64| {
        assert!(
            (ours - theirs).abs() <= tol,
            "{what}: ours {ours:.4}, torchvision {theirs:.4} (tolerance {tol})"
        );
    };
    for (i, &q) in p.quantiles.iter().enumerate() {
        close(
            &format!("area fraction q{q}"),
            quantile(&mut area, q),
            p.area_fraction[i],
            0.01,
        );
        close(
            &format!("aspect q{q}"),
            quantile(&mut aspect, q),
            p.aspect[i],
            0.02,
        );
    }
    close("mean area fraction", mean(&area), p.area_mean, 0.003);
    close("mean aspect", mean(&aspect), p.aspect_mean, 0.002);
    let full = area.iter().filter(|&&a| a == 1.0).count() as f64 / n as f64;
    close("whole-image boxes", full, p.full_image, 0.0006);
    close("mean centre x", mean(&cx), p.centre_x_mean, 0.002);
    close("centre x spread", std(&cx), p.centre_x_std, 0.002);
    close("centre y spread", std(&cy), p.centre_y_std, 0.002);
}

/// `count` of `n` trials against probability `p`: within 4.5 standard deviations.
fn assert_rate(what: &str, count: usize, n: usize, p: f64) {
    let rate = count as f64 / n as f64;
    let sd = (p * (1.0 - p) / n as f64).sqrt();
    assert!(
        (rate - p).abs() <= 4.5 * sd,
        "{what}: {count} of {n} = {rate:.4}, want {p:.4} +- {:.4}",
        4.5 * sd
    );
}

/// torchvision's `RandomApply([ColorJitter], p=0.8)` then `RandomGrayscale(p=0.2)`,
/// independent: observed from the outputs alone (unchanged, grey of the input, jittered in
/// colour, jittered then grey) over 4,000 draws.
#[test]
fn colour_distortion_applies_jitter_with_p_08_and_grayscale_with_p_02() {
    let img = pattern(8, 8);
    let mut grey_of_input = img.clone();
    grayscale(&mut grey_of_input);
    let n = 4000;
    let mut counts = [0usize; 4]; // none, grey only, jitter only, both
    for i in 0..n {
        let mut a = img.clone();
        color_distort(&mut a, 0.5, &mut view_rng(5, 0, i, 0));
        let is_grey = a.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]);
        let k = match (a == img, is_grey, a == grey_of_input) {
            (true, _, _) => 0,
            (false, true, true) => 1,
            (false, false, _) => 2,
            (false, true, false) => 3,
        };
        counts[k] += 1;
    }
    assert_rate("neither", counts[0], n, 0.2 * 0.8);
    assert_rate("grayscale only", counts[1], n, 0.2 * 0.2);
    assert_rate("jitter only", counts[2], n, 0.8 * 0.8);
    assert_rate("jitter then grayscale", counts[3], n, 0.8 * 0.2);
}

/// ColorJitter.get_params at strength s = 0.5 (ColorJitter(0.4, 0.4, 0.4, 0.1)): factors
/// U(0.6, 1.4), hue U(-0.1, 0.1), the order a uniform permutation (each op first 1/4).
#[test]
fn jitter_factors_and_order_are_drawn_as_colorjitter_get_params() {
    let n = 4000;
    let mut rng = view_rng(6, 0, 0, 0);
    let mut first = [0usize; 4];
    let (mut sums, mut lo, mut hi) = ([0f64; 4], [f32::MAX; 4], [f32::MIN; 4]);
    for _ in 0..n {
        let ops = sample_jitter(0.5, &mut rng);
        for (pos, op) in ops.iter().enumerate() {
            let (k, f) = match *op {
                Jitter::Brightness(f) => (0, f),
                Jitter::Contrast(f) => (1, f),
                Jitter::Saturation(f) => (2, f),
                Jitter::Hue(f) => (3, f),
            };
            if pos == 0 {
                first[k] += 1;
            }
            sums[k] += f as f64;
            lo[k] = lo[k].min(f);
            hi[k] = hi[k].max(f);
        }
    }
    for k in 0..4 {
        assert_rate(&format!("op {k} first"), first[k], n, 0.25);
        let (want_lo, want_hi) = if k == 3 { (-0.1, 0.1) } else { (0.6, 1.4) };
        assert!(
            lo[k] >= want_lo && lo[k] < want_lo + 0.01,
            "op {k} min {}",
            lo[k]
        );
        assert!(
            hi[k] <= want_hi && hi[k] > want_hi - 0.01,
            "op {k} max {}",
            hi[k]
        );
        let mean = sums[k] / n as f64;
        let sd = (want_hi - want_lo) as f64 / 12f64.sqrt() / (n as f64).sqrt();
        assert!(
            (mean - (want_lo + want_hi) as f64 / 2.0).abs() <= 4.5 * sd,
            "op {k} mean {mean}"
        );
    }
}

/// Our blur op (appendix A): with p = 0.5, sigma U(0.1, 2.0). A sigma below some s* changes
/// no pixel of a 0/255 checkerboard (the kernel's side taps round away), so the share of
/// changed views is 0.5 x (2.0 - s*) / 1.9, with s* found by bisection on the op itself.
#[test]
fn blur_applies_with_p_05_and_sigma_uniform_in_01_2() {
    let (h, w) = (16, 16);
    let board: Vec<u8> = (0..h * w)
        .flat_map(|p| [if (p / w + p % w) % 2 == 0 { 0u8 } else { 255 }; 3])
        .collect();
    let changes = |sigma: f32| {
        let mut a = board.clone();
        gaussian_blur(&mut a, h, w, sigma);
        a != board
    };
    let (mut lo, mut hi) = (0.1f32, 2.0f32);
    assert!(!changes(lo) && changes(hi));
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if changes(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let n = 4000;
    let changed = (0..n)
        .filter(|&i| {
            let mut a = board.clone();
            random_blur(&mut a, h, w, &mut view_rng(8, 0, i, 0));
            a != board
        })
        .count();
    assert_rate("blurred", changed, n, 0.5 * (2.0 - hi as f64) / 1.9);
}
