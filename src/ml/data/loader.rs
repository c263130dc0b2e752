//! The training loader: batches of two augmented views (SimCLR) or of one augmented view
//! (the supervised baseline), with the labels, prepared ahead on background threads while
//! the current step trains, identical whatever the thread count and whether the epoch
//! started at step 0 or was resumed at step k.
//!
//! Epoch order: the image indices permuted by `rng::stream(seed, Domain::DataOrder,
//! &[epoch])`; step s takes positions `s * B .. (s + 1) * B`; the last incomplete batch is
//! dropped (NT-Xent needs a constant N). Views of image i are keyed by i's index in the
//! image set (not its position), so they do not depend on the batch it lands in.
//!
//! Threads: worker t prepares steps `start + t, start + t + T, ...` into its own bounded
//! channel; the consumer reads the workers round-robin, so batches arrive in step order
//! with no reordering buffer and at most `T x QUEUE` batches in memory.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;

use super::ImageSet;
use crate::ml::augment::{augment_pair, augment_view, validate, view_rng};
use crate::ml::config::AugmentConfig;
use crate::ml::error::MlError;
use crate::ml::rng::{self, Domain};

/// Batches each worker may have ready ahead of the consumer.
const QUEUE: usize = 2;

/// One training step's input: two `[n, 3, H, W]` f32 arrays in [0, 1]; image k of `v1`
/// and image k of `v2` are the two views of the same image (the positive pair). From
/// [`Views::Single`], `v2` is empty: one view per image.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewBatch {
    pub step_in_epoch: usize,
    pub n: usize,
    pub v1: Vec<f32>,
    pub v2: Vec<f32>,
    /// The class of image k.
    pub labels: Vec<u16>,
}

/// Full batches in an epoch of `n_images` (the last incomplete one is dropped).
pub fn steps_per_epoch(n_images: usize, batch_size: usize) -> usize {
    n_images.checked_div(batch_size).unwrap_or(0)
}

/// An epoch's order of `indices`: a shuffle drawn from `stream`. Pretraining draws it from
/// [`pretrain_order_stream`]; evaluations that train draw theirs from their own streams.
pub fn epoch_order(indices: &[usize], stream: &mut impl rand::Rng) -> Vec<usize> {
    let mut perm = indices.to_vec();
    perm.shuffle(stream);
    perm
}

/// The stream of a pretrain's epoch order: `rng::stream(seed, Domain::DataOrder, &[epoch])`.
pub fn pretrain_order_stream(seed: u64, epoch: usize) -> rand_chacha::ChaCha8Rng {
    rng::stream(seed, Domain::DataOrder, &[epoch as u64])
}

/// HWC u8 -> CHW f32 in [0, 1]. `out` is `3 * hw` long.
pub(crate) fn to_chw(src: &[u8], out: &mut [f32], hw: usize) {
    let (r, rest) = out.split_at_mut(hw);
    let (g, b) = rest.split_at_mut(hw);
    for (p, px) in src.chunks_exact(3).enumerate() {
        r[p] = px[0] as f32 * (1.0 / 255.0);
        g[p] = px[1] as f32 * (1.0 / 255.0);
        b[p] = px[2] as f32 * (1.0 / 255.0);
    }
}

struct Job {
    set: Arc<ImageSet>,
    perm: Arc<Vec<usize>>,
    aug: AugmentConfig,
    seed: u64,
    epoch: usize,
    batch_size: usize,
    /// Two views per image (SimCLR), or one (the supervised baseline).
    pair: bool,
}

impl Job {
    fn batch(&self, step: usize) -> ViewBatch {
        let (h, w) = (self.set.height, self.set.width);
        let per = 3 * h * w;
        let n = self.batch_size;
        let mut v1 = vec![0f32; n * per];
        let mut v2 = vec![0f32; if self.pair { n * per } else { 0 }];
        let mut labels = Vec::with_capacity(n);
        for (k, &idx) in self.perm[step * n..(step + 1) * n].iter().enumerate() {
            let img = self.set.image(idx);
            labels.push(self.set.labels[idx]);
            if self.pair {
                let (a, b) = augment_pair(img, h, w, &self.aug, self.seed, self.epoch, idx);
                to_chw(&a, &mut v1[k * per..(k + 1) * per], h * w);
                to_chw(&b, &mut v2[k * per..(k + 1) * per], h * w);
            } else {
                // View 0's stream: the first view of the symmetric pair.
                let mut rng = view_rng(self.seed, self.epoch, idx, 0);
                let a = augment_view(img, h, w, &self.aug, &mut rng);
                to_chw(&a, &mut v1[k * per..(k + 1) * per], h * w);
            }
        }
        ViewBatch {
            step_in_epoch: step,
            n,
            v1,
            v2,
            labels,
        }
    }
}

/// Iterator over the batches of one epoch from `start_step` on (see [`view_batches`]).
pub struct ViewBatches {
    rxs: Vec<Receiver<ViewBatch>>,
    handles: Vec<JoinHandle<()>>,
    start: usize,
    next: usize,
    steps: usize,
}

/// How many augmented views of each image a batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Views {
    /// Two (SimCLR's positive pair).
    Pair,
    /// One, `aug.ops` drawn from the stream of view 0, so it is the first view of a
    /// symmetric pair; `ViewBatch::v2` is empty (the supervised baseline).
    Single,
}

/// Which batches of which epoch [`view_batches`] makes, and how.
#[derive(Clone, Copy, Debug)]
pub struct EpochViews<'a> {
    /// Two views per image (SimCLR) or one (the supervised baseline).
    pub views: Views,
    pub aug: &'a AugmentConfig,
    /// The run's seed: data order and every augmentation draw derive from it.
    pub seed: u64,
    pub epoch: usize,
    pub batch_size: usize,
    /// The first step of the epoch to make (a resumed epoch starts past 0).
    pub start_step: usize,
    /// Background threads preparing batches (0 counts as 1).
    pub threads: usize,
}

/// The batches of epoch `e.epoch` of `indices` (indices into `set`) from `e.start_step` to the
/// end of the epoch, `e.views` views per image augmented by `e.aug` and prepared by
/// `e.threads` background threads. Output does not depend on `threads`, and starting at
/// `start_step = k` gives exactly the batches k.. of an epoch started at 0.
///
/// Errors (`Config`) on a batch size of 0 or above the number of images, an index outside
/// the set, a `start_step` past the end, or an invalid `aug`.
pub fn view_batches(
    set: Arc<ImageSet>,
    indices: Arc<Vec<usize>>,
    e: &EpochViews,
) -> Result<ViewBatches, MlError> {
    let &EpochViews {
        views,
        aug,
        seed,
        epoch,
        batch_size,
        start_step,
        threads,
    } = e;
    let pair = views == Views::Pair;
    validate(aug)?;
    if batch_size == 0 || batch_size > indices.len() {
        return Err(MlError::Config(format!(
            "batch size {batch_size} must be between 1 and the {} training images",
            indices.len()
        )));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= set.len()) {
        return Err(MlError::Config(format!(
            "image index {bad} outside the set of {} images",
            set.len()
        )));
    }
    let steps = steps_per_epoch(indices.len(), batch_size);
    if start_step > steps {
        return Err(MlError::Config(format!(
            "start step {start_step} past the {steps} steps of the epoch"
        )));
    }
    let threads = threads.max(1).min((steps - start_step).max(1));
    let job = Arc::new(Job {
        perm: Arc::new(epoch_order(
            &indices,
            &mut pretrain_order_stream(seed, epoch),
        )),
        set,
        aug: aug.clone(),
        seed,
        epoch,
        batch_size,
        pair,
    });
    let mut rxs = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let (tx, rx) = bounded(QUEUE);
        let job = Arc::clone(&job);
        let h = std::thread::Builder::new()
            .name(format!("loader-{t}"))
            .spawn(move || {
                for step in (start_step + t..steps).step_by(threads) {
                    if tx.send(job.batch(step)).is_err() {
                        return; // consumer gone
                    }
                }
            })
            .map_err(|e| MlError::Config(format!("cannot start loader thread: {e}")))?;
        rxs.push(rx);
        handles.push(h);
    }
    Ok(ViewBatches {
        rxs,
        handles,
        start: start_step,
        next: start_step,
        steps,
    })
}

impl Iterator for ViewBatches {
    type Item = ViewBatch;

    fn next(&mut self) -> Option<ViewBatch> {
        if self.next >= self.steps {
            return None;
        }
        let t = (self.next - self.start) % self.rxs.len();
        match self.rxs[t].recv() {
            Ok(b) => {
                self.next += 1;
                Some(b)
            }
            Err(_) => {
                // The worker ended without sending this step: it panicked. Re-raise its
                // panic rather than silently ending the epoch early.
                let h = self.handles.swap_remove(t);
                match h.join() {
                    Err(p) => std::panic::resume_unwind(p),
                    Ok(()) => panic!("loader thread {t} stopped before step {}", self.next),
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.steps - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for ViewBatches {}

impl Drop for ViewBatches {
    fn drop(&mut self) {
        // Closing the channels makes blocked workers return; then wait for them.
        self.rxs.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Un-augmented batches of `indices` in the given order for feature extraction:
/// (`[n, 3, H, W]` f32 in [0, 1], labels); the last batch may be partial.
pub struct PlainBatches {
    set: Arc<ImageSet>,
    indices: Arc<Vec<usize>>,
    batch_size: usize,
    pos: usize,
}

/// See [`PlainBatches`]. A `batch_size` of 0 yields nothing.
pub fn plain_batches(
    set: Arc<ImageSet>,
    indices: Arc<Vec<usize>>,
    batch_size: usize,
) -> PlainBatches {
    PlainBatches {
        set,
        indices,
        batch_size,
        pos: 0,
    }
}

impl Iterator for PlainBatches {
    type Item = (Vec<f32>, Vec<u16>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.batch_size == 0 || self.pos >= self.indices.len() {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.indices.len());
        let hw = self.set.height * self.set.width;
        let mut x = vec![0f32; (end - self.pos) * 3 * hw];
        let mut y = Vec::with_capacity(end - self.pos);
        for (k, &i) in self.indices[self.pos..end].iter().enumerate() {
            to_chw(self.set.image(i), &mut x[k * 3 * hw..(k + 1) * 3 * hw], hw);
            y.push(self.set.labels[i]);
        }
        self.pos = end;
        Some((x, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{AugOp, AugProtocol};

    fn tiny_set(n: usize) -> Arc<ImageSet> {
        crate::test_support::images::tiny_images(n, |i| (i * 13 % 251) as u8)
    }

    /// Epoch 2 of seed 9 in batches of 5, from `start_step`, on `threads` threads.
    fn epoch<'a>(
        views: Views,
        aug: &'a AugmentConfig,
        start_step: usize,
        threads: usize,
    ) -> EpochViews<'a> {
        EpochViews {
            views,
            aug,
            seed: 9,
            epoch: 2,
            batch_size: 5,
            start_step,
            threads,
        }
    }

    fn all(
        set: &Arc<ImageSet>,
        idx: &Arc<Vec<usize>>,
        aug: &AugmentConfig,
        start: usize,
        threads: usize,
    ) -> Vec<ViewBatch> {
        view_batches(
            set.clone(),
            idx.clone(),
            &epoch(Views::Pair, aug, start, threads),
        )
        .unwrap()
        .collect()
    }

    #[test]
    fn a_single_view_is_the_first_view_of_the_pair_with_the_labels() {
        let set = tiny_set(20);
        let idx = Arc::new((0..20).collect::<Vec<_>>());
        let aug = AugmentConfig::default();
        let pairs = all(&set, &idx, &aug, 0, 2);
        let single: Vec<ViewBatch> =
            view_batches(set.clone(), idx, &epoch(Views::Single, &aug, 1, 3))
                .unwrap()
                .collect();
        assert_eq!(single.len(), pairs.len() - 1, "resumed at step 1");
        for (s, p) in single.iter().zip(&pairs[1..]) {
            assert_eq!(
                (s.step_in_epoch, &s.v1, &s.labels),
                (p.step_in_epoch, &p.v1, &p.labels)
            );
            assert!(s.v2.is_empty());
            assert!(s.labels.iter().all(|&l| l < 4));
        }
    }

    #[test]
    fn batches_do_not_depend_on_threads_and_resume_gives_the_tail() {
        let set = tiny_set(40);
        let idx = Arc::new((0..37).collect::<Vec<_>>());
        let aug = AugmentConfig::default();
        let one = all(&set, &idx, &aug, 0, 1);
        assert_eq!(
            one.len(),
            7,
            "37 images in batches of 5: the last 2 dropped"
        );
        assert_eq!(steps_per_epoch(37, 5), 7);
        assert_eq!(one, all(&set, &idx, &aug, 0, 3));
        assert_eq!(&one[4..], &all(&set, &idx, &aug, 4, 3)[..]);
        assert_eq!(&one[4..], &all(&set, &idx, &aug, 4, 1)[..]);
        for (s, b) in one.iter().enumerate() {
            assert_eq!((b.step_in_epoch, b.n), (s, 5));
            assert_eq!(b.v1.len(), 5 * 3 * 64);
            assert!(b.v1.iter().chain(&b.v2).all(|v| (0.0..=1.0).contains(v)));
            assert_ne!(b.v1, b.v2);
        }
        // Another epoch: another order and other views.
        let e3 = EpochViews {
            epoch: 3,
            ..epoch(Views::Pair, &aug, 0, 2)
        };
        let e3: Vec<_> = view_batches(set.clone(), idx.clone(), &e3)
            .unwrap()
            .collect();
        assert_ne!(e3[0].v1, one[0].v1);
        // Dropping the iterator early ends the workers (no hang).
        let one_per_batch = EpochViews {
            batch_size: 1,
            ..epoch(Views::Pair, &aug, 0, 3)
        };
        let mut it = view_batches(set.clone(), idx.clone(), &one_per_batch).unwrap();
        it.next().unwrap();
        drop(it);
    }

    #[test]
    fn one_branch_raw_second_view_is_the_plain_image_in_chw() {
        let set = tiny_set(10);
        let idx = Arc::new((0..10).collect::<Vec<_>>());
        let aug = AugmentConfig {
            protocol: AugProtocol::OneBranchRaw,
            ops: vec![AugOp::Rotate],
            ..AugmentConfig::default()
        };
        let e = EpochViews {
            seed: 1,
            epoch: 0,
            batch_size: 10,
            ..epoch(Views::Pair, &aug, 0, 2)
        };
        let b = view_batches(set.clone(), idx.clone(), &e)
            .unwrap()
            .next()
            .unwrap();
        let order = epoch_order(&idx, &mut pretrain_order_stream(1, 0));
        let (plain, labels) = plain_batches(set.clone(), Arc::new(order.clone()), 10)
            .next()
            .unwrap();
        assert_eq!(b.v2, plain);
        assert_eq!(
            labels,
            order.iter().map(|&i| set.labels[i]).collect::<Vec<_>>()
        );
        // Pixel (y=1, x=2), green channel of image order[0].
        let want = set.image(order[0])[(8 + 2) * 3 + 1] as f32 / 255.0;
        assert!((plain[64 + 8 + 2] - want).abs() < 1e-6);
    }

    #[test]
    fn plain_batches_keep_the_partial_tail_and_bad_configs_are_errors() {
        let set = tiny_set(7);
        let idx = Arc::new((0..7).collect::<Vec<_>>());
        let sizes: Vec<usize> = plain_batches(set.clone(), idx.clone(), 3)
            .map(|(x, y)| {
                assert_eq!(x.len(), y.len() * 3 * 64);
                y.len()
            })
            .collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        let aug = AugmentConfig::default();
        let at = |batch_size, start_step| EpochViews {
            seed: 0,
            epoch: 0,
            batch_size,
            start_step,
            threads: 1,
            ..epoch(Views::Pair, &aug, 0, 1)
        };
        assert!(view_batches(set.clone(), idx.clone(), &at(8, 0)).is_err());
        assert!(view_batches(set.clone(), idx.clone(), &at(0, 0)).is_err());
        assert!(view_batches(set.clone(), Arc::new(vec![0, 99]), &at(1, 0)).is_err());
        assert!(view_batches(set.clone(), idx.clone(), &at(2, 4)).is_err());
        assert_eq!(view_batches(set, idx, &at(2, 3)).unwrap().count(), 0);
    }
}
