//! Process exit codes of `sweep`, defined once: `main` maps errors to them, the coordinator
//! reads its workers' codes with them, and the signal handlers (a sweep's, the dashboard's)
//! exit with [`INTERRUPTED`].

/// Success.
pub const OK: i32 = 0;
/// A failure of the machinery (I/O, database, a crash).
pub const FAILURE: i32 = 1;
/// Bad input (spec, flag, data file, a database that is not ours or is newer): nothing
/// was written.
pub const BAD_INPUT: i32 = 2;
/// The sweep finished but some runs failed (`sweep status NAME` shows why).
pub const RUNS_FAILED: i32 = 3;
/// Interrupted (Ctrl-C, SIGTERM, Slurm's USR1): checkpoints written, `sweep resume` continues;
/// the way `sweep serve` ends.
pub const INTERRUPTED: i32 = 130;
