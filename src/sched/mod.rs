//! Scheduling: `sweep run` registers a sweep and starts local worker processes that claim
//! runs from the store (the same workers Slurm starts), draws progress from their events,
//! and turns Ctrl-C into a graceful stop. Resume is nothing special: finished stages are
//! never claimed again, interrupted ones continue from their newest verified checkpoint.

mod coordinator;
pub mod events;
mod launch;
mod progress;
pub mod signals;
pub mod slurm_array;
mod worker;

pub use coordinator::{coordinate, RunOptions, RunSummary};
pub use launch::WorkerLaunch;
pub use worker::{hostname, DeviceName, Worker, WorkerConfig, WorkerExit};

use anyhow::Result;

use crate::store::{retry_transient, Store};

/// Makes runs leased by dead processes on this host claimable at once (a killed `sweep
/// run` should not make the next one wait for the lease to time out).
pub(crate) fn reclaim_dead_local_leases(rt: &tokio::runtime::Runtime, store: &Store) -> Result<()> {
    let me = std::process::id() as i64;
    let host = hostname();
    for (run, owner, pid) in rt.block_on(retry_transient(|| store.leases_on_host(&host)))? {
        if pid != me && !process_alive(pid) {
            rt.block_on(retry_transient(|| store.expire_lease(&run, &owner)))?;
        }
    }
    Ok(())
}

fn process_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 performs only the existence and permission checks.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc == 0 {
        // A zombie (exited, not yet reaped by its parent) still answers kill(0).
        let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = status
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        return state != Some("Z");
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
