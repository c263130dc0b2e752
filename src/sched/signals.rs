//! Stop requests: the first SIGINT / SIGTERM / SIGUSR1 (Slurm's `--signal=USR1@90`) asks
//! for a graceful stop (finish the step, checkpoint, release the lease, exit 130); the
//! second exits at once (the lease then expires and the run is reclaimed later).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared flag set by the first signal.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
}

/// Installs the handlers: first signal sets the flag, second exits at once with
/// [`crate::exit::INTERRUPTED`].
pub fn install() -> std::io::Result<StopFlag> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let flag = StopFlag::default();
    for sig in [SIGINT, SIGTERM, SIGUSR1] {
        // Registered first, so it runs when the flag is already set: the second signal.
        signal_hook::flag::register_conditional_shutdown(
            sig,
            crate::exit::INTERRUPTED,
            Arc::clone(&flag.0),
        )?;
        signal_hook::flag::register(sig, Arc::clone(&flag.0))?;
    }
    Ok(flag)
}
