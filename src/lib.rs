//! simclr-sweep: run SimCLR experiment sweeps (Chen et al. 2020) with candle, record every
//! run, metric and checkpoint in SQL, resume interrupted sweeps exactly, and turn the
//! results into the paper's figures and tables.
//!
//! Layers (docs/ARCHITECTURE.md#layers): `spec` parses YAML into resolved [`spec::RunConfig`]s,
//! `store` is the only module that speaks SQL, `ml` trains and evaluates and knows nothing
//! of either, `sched` ties them together, `report` reads the store and writes files,
//! `cli`/`app` are thin.

pub mod app;
pub mod cli;
pub mod exit;
pub mod fetch;
pub mod ml;
pub(crate) mod overview;
pub mod report;
pub mod sched;
pub mod serve;
pub(crate) mod slurm;
pub mod spec;
pub mod store;
#[cfg(test)]
mod test_support;
pub(crate) mod units;
pub mod vocab;
