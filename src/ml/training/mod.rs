//! Pretraining an encoder: the loop (`trainer`), its objectives (`loss`: the contrastive
//! losses of Table 4; `supervised`: the cross-entropy baseline of Table 1 and Figure 7), the
//! optimizers (`optim`: SGD, LARS, Adam) and the learning-rate schedule (`schedule`).

pub mod loss;
pub mod optim;
pub mod schedule;
pub mod supervised;
pub mod trainer;
