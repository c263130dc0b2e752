//! `sweep`: parse the command line, run it, print the error chain once, exit with a code
//! that says what happened (`simclr_sweep::exit`).

use clap::Parser;
use simclr_sweep::app::{self, UserError};
use simclr_sweep::exit;
use simclr_sweep::spec::SpecError;
use simclr_sweep::store::StoreError;

fn main() {
    // candle's own elementwise thread pool competes with the rayon threads of our conv and
    // BatchNorm kernels for the cores: one candle thread was faster in every side-by-side
    // measurement (ConvNet N=64: 1816 -> 2532 img/s on 2 cores). Set before any thread
    // starts; an explicit setting wins.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    simclr_sweep::ml::heap::retain_freed_memory();
    let cli = simclr_sweep::cli::Cli::parse();
    let code = match app::main(cli) {
        Ok(code) => code,
        // Output piped into `head` that closed early: not an error (as in ripgrep).
        Err(err) if is_broken_pipe(&err) => exit::OK,
        Err(err) => {
            eprintln!("error: {err:#}");
            exit_code_of(&err)
        }
    };
    std::process::exit(code);
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Bad input (exit 2) is told apart from failures of the machinery (exit 1).
fn exit_code_of(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.is::<SpecError>() || cause.is::<UserError>() {
            return exit::BAD_INPUT;
        }
        if let Some(
            StoreError::NotOurs { .. }
            | StoreError::NewerSchema { .. }
            | StoreError::NoSuchSweep(_),
        ) = cause.downcast_ref::<StoreError>()
        {
            return exit::BAD_INPUT;
        }
    }
    exit::FAILURE
}
