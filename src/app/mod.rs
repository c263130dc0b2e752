//! One function per subcommand: thin glue between the CLI, the spec, the store, the
//! scheduler and the report. Each submodule holds one family of commands; errors carry
//! context, and `main` prints them once and maps them to an exit code ([`crate::exit`]).

mod estimate;
mod execute;
mod plan;
mod staging;
mod status;
mod submit;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, DataCommand, FetchDataset};
use crate::exit;
use crate::ml::config::DatasetName;
use crate::store::Store;

/// Bad input from the user (flag, data, state): exit code 2, nothing written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// Runs the parsed command; returns the exit code.
pub fn main(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Plan { spec, json } => plan::plan(&cli, spec, *json),
        Command::Run { spec, exec } => execute::run(&cli, spec, exec),
        Command::Resume { name, exec } => execute::resume(&cli, name, exec),
        Command::Retry { name, .. } => execute::retry(&cli, name),
        Command::Worker(args) => execute::worker(&cli, args),
        Command::Status { sweep, json } => status::status(&cli, sweep.as_deref(), *json),
        Command::Ls { json } => status::status(&cli, None, *json),
        Command::Report {
            sweep,
            all,
            out,
            format,
        } => match (sweep, all) {
            (Some(sweep), _) => report(&cli, sweep, out.as_deref(), format),
            (None, _) => report_all(&cli, out.as_deref(), format),
        },
        Command::Submit(args) => submit::submit(&cli, args),
        Command::Serve { bind } => crate::serve::main(&cli.db, bind),
        Command::Data(DataCommand::Fetch {
            dataset,
            url,
            sha256,
        }) => fetch(&cli, *dataset, url.as_deref(), sha256.as_deref()),
        Command::Completions { shell } => completions(*shell),
    }
}

/// `sweep completions SHELL`: the completion script clap derives from the command line's
/// own definition, so it never falls behind a new subcommand or flag.
fn completions(shell: clap_complete::Shell) -> Result<i32> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "sweep", &mut std::io::stdout());
    Ok(exit::OK)
}

/// The async runtime the store runs on (one thread: the store is the only async part).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The store of a command that needs an earlier sweep (read-only); refuses, creating no
/// file, when there is no database yet.
fn open_existing(rt: &tokio::runtime::Runtime, db: &str) -> Result<Store> {
    let store = rt.block_on(Store::open_read_only(db))?;
    store.ok_or_else(|| {
        let db = crate::store::redact(db);
        UserError(format!(
            "no database at {db}: run a sweep first (`sweep run SPEC`)"
        ))
        .into()
    })
}

/// `sweep report NAME`: figures and tables into `out` (default `reports/NAME`).
fn report(
    cli: &Cli,
    sweep: &str,
    out: Option<&Path>,
    formats: &[crate::cli::ReportFormat],
) -> Result<i32> {
    let out = out.map_or_else(|| PathBuf::from("reports").join(sweep), Path::to_path_buf);
    let rt = runtime()?;
    let store = open_existing(&rt, &cli.db)?;
    let formats: Vec<crate::report::Format> = formats.iter().map(|&f| f.into()).collect();
    let written = rt.block_on(crate::report::write(&store, sweep, &out, &formats))?;
    println!("wrote {} files to {}", written.len(), out.display());
    Ok(exit::OK)
}

/// `sweep report --all`: every sweep's report under `out` (default `reports`), and the
/// index `out/README.md`.
fn report_all(cli: &Cli, out: Option<&Path>, formats: &[crate::cli::ReportFormat]) -> Result<i32> {
    let out = out.map_or_else(|| PathBuf::from("reports"), Path::to_path_buf);
    let rt = runtime()?;
    let store = open_existing(&rt, &cli.db)?;
    let formats: Vec<crate::report::Format> = formats.iter().map(|&f| f.into()).collect();
    let written = rt.block_on(crate::report::write_all(&store, &out, &formats))?;
    println!("wrote {} files to {}", written.len(), out.display());
    Ok(exit::OK)
}

/// `sweep data fetch`: the official archive into the data directory.
fn fetch(cli: &Cli, dataset: FetchDataset, url: Option<&str>, sha256: Option<&str>) -> Result<i32> {
    let name = match dataset {
        FetchDataset::Cifar10 => DatasetName::Cifar10,
        FetchDataset::Cifar100 => DatasetName::Cifar100,
    };
    let path = crate::fetch::fetch(name, url, sha256, &cli.data_dir, cli.quiet)?;
    println!("{}", path.display());
    Ok(exit::OK)
}

/// A cell value for a whitespace-separated terminal table: lists as one word, `[a,b]`.
fn cell_text(v: &serde_json::Value) -> String {
    crate::spec::value_text(v, crate::spec::Lists::Bracketed)
}
