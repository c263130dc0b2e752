//! Fault injection for crash tests: `SWEEP_FAULT=NAME:MARKER` makes the process SIGKILL
//! itself the first time it reaches the point `NAME` (the marker file records that it
//! happened, so the rerun goes through). Points: `checkpoint_write` (temp file written and
//! fsynced, not yet renamed) and `checkpoint_recorded@STEP` (the worker has recorded the
//! checkpoint of global step STEP in the store and not yet gone on). Without the variable this is one environment lookup.

/// Dies here (SIGKILL, like a lost machine) if `SWEEP_FAULT` names this point and its
/// marker file does not exist yet.
pub fn point(name: &str) {
    let Ok(spec) = std::env::var("SWEEP_FAULT") else {
        return;
    };
    let Some((point, marker)) = spec.split_once(':') else {
        return;
    };
    if point != name || std::path::Path::new(marker).exists() {
        return;
    }
    if std::fs::write(marker, name).is_ok() {
        // SAFETY: raising a signal in our own process.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}
