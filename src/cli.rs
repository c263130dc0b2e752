//! Command-line interface (clap derive only; behaviour lives in `app`).
//!
//! Exit codes are defined in [`crate::exit`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "sweep",
    version,
    about = "Run SimCLR experiment sweeps and turn them into the paper's figures and tables"
)]
pub struct Cli {
    /// Database: a SQLite file path (created if missing), a sqlite:// URL, or a
    /// postgres://user@host/db URL (many machines; keep the password in DATABASE_URL or
    /// SWEEP_DB rather than on a command line). Default: $DATABASE_URL, else sweeps.db.
    #[arg(long, global = true, env = "SWEEP_DB", default_value_t = default_db(),
          hide_default_value = true, hide_env_values = true)]
    pub db: String,
    /// Where datasets live (CIFAR-10: cifar-10-batches-bin/ or cifar-10-binary.tar.gz).
    #[arg(long, global = true, env = "SWEEP_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Where checkpoints are written (one directory per run id).
    #[arg(long, global = true, env = "SWEEP_RUNS_DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
    /// No progress bars or log lines, only results and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone, Default)]
pub struct SpecArgs {
    /// The sweep spec (YAML), e.g. sweeps/augment_pairs.yaml.
    pub spec: PathBuf,
    /// A named profile of the spec, e.g. `smoke`.
    #[arg(long)]
    pub profile: Option<String>,
    /// Override any run-config field: `--set optimizer.lr=0.5` (repeatable); also
    /// `--set seeds=[0,1]` and `--set control=false` (no random-weights control).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// Local worker processes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Devices, comma separated: `cpu`, or `cuda:0,cuda:1` (one worker per GPU).
    #[arg(long, default_value = "cpu")]
    pub devices: String,
    /// Attempts per run before a run whose workers keep dying is marked failed.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: i64,
    /// Seconds without a heartbeat after which a running run is reclaimed.
    #[arg(long, env = "SWEEP_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Expand a spec and show its runs, which are already in the store, and the cost (writes nothing).
    Plan {
        #[command(flatten)]
        spec: SpecArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Register a sweep and run it to the end (resumes whatever is unfinished).
    Run {
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Continue a registered sweep; the spec comes from the store.
    Resume {
        name: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Requeue a sweep's failed runs.
    Retry {
        name: String,
        /// Requeue failed runs (the default and only mode).
        #[arg(long, default_value_t = true)]
        failed: bool,
    },
    /// Show the sweeps, or one sweep's runs and their states.
    Status {
        sweep: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the sweeps in the store.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Render the sweep's figures and tables (PNG/SVG, Markdown, LaTeX, CSV).
    Report {
        /// The sweep to report (or --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        sweep: Option<String>,
        /// Every sweep in the store, each into OUT/SWEEP, and OUT/README.md: one line per
        /// sweep with its headline finding and a link.
        #[arg(long)]
        all: bool,
        /// Output directory (default reports/SWEEP; with --all, reports).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Formats to write.
        #[arg(long, value_delimiter = ',', default_value = "png,svg,md,tex,csv")]
        format: Vec<ReportFormat>,
    },
    /// Serve a live, read-only dashboard of the store's sweeps and runs over HTTP.
    Serve {
        /// Address and port to listen on; anything but loopback is reachable by others
        /// (a warning says so).
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
    },
    /// Claim and run runnable runs until none are left (what `run` starts, and Slurm jobs run).
    Worker(WorkerArgs),
    /// Register a sweep and submit workers for it to a cluster (`--slurm`: an sbatch job array).
    Submit(SubmitArgs),
    /// Datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Print a shell completion script, e.g.
    /// `sweep completions bash > ~/.local/share/bash-completion/completions/sweep`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Only runs of this sweep.
    #[arg(long)]
    pub sweep: Option<String>,
    /// Stop after this many runs.
    #[arg(long)]
    pub max_runs: Option<u64>,
    /// Exit after this many seconds with nothing to claim (default: exit at once).
    #[arg(long, default_value_t = 0)]
    pub idle_exit: u64,
    /// Device: cpu, cuda:N, or auto (the GPU the environment names: Slurm's
    /// CUDA_VISIBLE_DEVICES or SLURM_JOB_GPUS; cpu when there is none).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Threads that prepare augmented batches.
    #[arg(long, default_value_t = 1)]
    pub loader_threads: usize,
    /// Print progress as JSON lines (read by `sweep run`).
    #[arg(long, hide = true)]
    pub events_json: bool,
    #[arg(long, default_value_t = 3)]
    pub max_attempts: i64,
    #[arg(long, env = "SWEEP_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,
}

/// `--db` when neither the flag nor SWEEP_DB is given: DATABASE_URL, else `sweeps.db`.
fn default_db() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "sweeps.db".into())
}

#[derive(Args, Debug, Clone)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Submit to Slurm: one sbatch job array of `sweep worker` processes.
    #[arg(long)]
    pub slurm: bool,
    /// Array tasks: workers running at once (not the number of runs).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub workers: u32,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Generic resources per worker, e.g. `gpu:1` (the worker then uses cuda:0).
    #[arg(long)]
    pub gres: Option<String>,
    /// Time limit per worker, e.g. `4:00:00`; 90 s before it the worker checkpoints.
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per worker (also its compute threads).
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: u32,
    /// Device of each worker: cpu, cuda:N or auto (default: auto with a gpu --gres, so
    /// each task takes the GPU Slurm allocated to it; else cpu).
    #[arg(long)]
    pub device: Option<String>,
    /// Threads per worker that prepare augmented batches.
    #[arg(long, default_value_t = 1)]
    pub loader_threads: usize,
    /// Attempts per run before a run whose workers keep dying is marked failed.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: i64,
    /// Seconds without a heartbeat after which a running run is reclaimed.
    #[arg(long, env = "SWEEP_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,
    /// Seconds a worker waits for runs to become claimable before exiting (default: two leases + 60).
    #[arg(long)]
    pub idle_exit: Option<u64>,
    /// Print the sbatch script and submit nothing (writes nothing).
    #[arg(long)]
    pub dry_run: bool,
    /// Allow a SQLite store with Slurm (only when every worker runs on this node, on local disk).
    #[arg(long)]
    pub allow_sqlite: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Png,
    Svg,
    Md,
    Tex,
    Csv,
}

impl From<ReportFormat> for crate::report::Format {
    fn from(f: ReportFormat) -> Self {
        match f {
            ReportFormat::Png => Self::Png,
            ReportFormat::Svg => Self::Svg,
            ReportFormat::Md => Self::Md,
            ReportFormat::Tex => Self::Tex,
            ReportFormat::Csv => Self::Csv,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download a dataset's official archive into the data directory (verified, resumable).
    Fetch {
        dataset: FetchDataset,
        /// A mirror of the official archive.
        #[arg(long)]
        url: Option<String>,
        /// Expected sha256 of the archive (for mirrors that repackage it).
        #[arg(long)]
        sha256: Option<String>,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchDataset {
    Cifar10,
    Cifar100,
}
