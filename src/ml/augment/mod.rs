//! Data augmentation (Chen et al. 2020, appendix A): the ops on u8 images and the protocols
//! that compose them into views (`host`, run by the loader's threads), the same ops as batched
//! tensor ops on the training device (`device`), and the torchvision golden tests that hold
//! both to PyTorch's behaviour (`torchvision`, tests only).

pub mod device;
mod host;
#[cfg(test)]
mod torchvision;

pub use host::*;
