//! SGD over features held in memory, the loop of the features probe's classifier and of
//! Table 3's probe MLP: each epoch visits the examples in an order drawn from
//! `rng::stream(seed, Domain::Eval, &[key_of(order_key), epoch])`, in minibatches of the
//! batch size (the last one of an epoch may be smaller), the learning rate cosine-decayed
//! from its peak to 0 over all steps without warmup.

use candle_core::Tensor;

use super::splits::epoch_order;
use crate::ml::config::EvalTraining;
use crate::ml::error::tensor_err;
use crate::ml::training::schedule::cosine_decay;
use crate::ml::MlError;

/// The minibatches and learning rates of a run of `epochs` over labelled features.
pub(crate) struct FeatureEpochs<'a> {
    x: &'a Tensor,
    /// The labels, u32 `[n]`, on the features' device.
    y: Tensor,
    n: usize,
    batch_size: usize,
    steps_per_epoch: usize,
    total_steps: usize,
    peak: f64,
    seed: u64,
    order_key: &'a str,
}

impl<'a> FeatureEpochs<'a> {
    /// The run of `training` over features `x` `[n, D]` labelled `y`, its epoch orders
    /// drawn from `seed` under `order_key`.
    pub fn new(
        x: &'a Tensor,
        y: &[u16],
        training: &EvalTraining,
        seed: u64,
        order_key: &'a str,
    ) -> Result<Self, MlError> {
        let n = x.dim(0).map_err(tensor_err)?;
        let labels: Vec<u32> = y.iter().map(|&c| c as u32).collect();
        let y = Tensor::from_vec(labels, n, x.device()).map_err(tensor_err)?;
        let batch_size = training.batch_size.clamp(1, n.max(1));
        let steps_per_epoch = n.div_ceil(batch_size);
        Ok(Self {
            x,
            y,
            n,
            batch_size,
            steps_per_epoch,
            total_steps: (steps_per_epoch * training.epochs).max(1),
            peak: training.peak_lr(),
            seed,
            order_key,
        })
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// Epoch `epoch`: `step(x, y, lr, global_step)` for each minibatch in order.
    pub fn run_epoch(
        &self,
        epoch: usize,
        mut step: impl FnMut(&Tensor, &Tensor, f64, usize) -> Result<(), MlError>,
    ) -> Result<(), MlError> {
        let all: Vec<usize> = (0..self.n).collect();
        let order = epoch_order(&all, self.seed, self.order_key, epoch);
        for (s, chunk) in order.chunks(self.batch_size).enumerate() {
            let chunk: Vec<u32> = chunk.iter().map(|&i| i as u32).collect();
            let idx = Tensor::new(chunk.as_slice(), self.x.device()).map_err(tensor_err)?;
            let x = self.x.index_select(&idx, 0).map_err(tensor_err)?;
            let y = self.y.index_select(&idx, 0).map_err(tensor_err)?;
            let global = epoch * self.steps_per_epoch + s;
            step(
                &x,
                &y,
                cosine_decay(self.peak, global, self.total_steps),
                global,
            )?;
        }
        Ok(())
    }
}
