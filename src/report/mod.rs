//! Reports (being written): figures and tables from the store.
use std::path::{Path, PathBuf};

use crate::cli::ReportFormat;
use crate::store::Store;

/// Writes the sweep's report into `out` (being written).
pub async fn write(
    _store: &Store,
    sweep: &str,
    _out: &Path,
    _formats: &[ReportFormat],
) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::bail!("report for {sweep}: not implemented yet")
}
