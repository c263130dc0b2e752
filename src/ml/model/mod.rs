//! The network: the base encoder f(.) (`encoder`: ConvNet or ResNet, CIFAR or ImageNet stem),
//! the projection head g(.) (`head`), the two together (`simclr::SimclrModel`), the
//! supervised baseline's classifier on h (`classifier`), and their seeded initialisation
//! (`init`).

pub mod classifier;
pub mod encoder;
pub mod head;
pub mod init;
mod simclr;

pub use simclr::SimclrModel;
