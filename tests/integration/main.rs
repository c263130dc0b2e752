//! Integration tests: one binary (ripgrep style), each test in its own temp dir with its
//! own database, fixture data and checkpoints, driving the real `sweep` binary.

mod browser;
mod cluster;
#[allow(dead_code)]
mod common;
mod completions;
mod layers;
mod plan;
mod run;
mod serve;
