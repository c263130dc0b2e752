//! The Slurm job array of workers (docs/ARCHITECTURE.md#multi-machine): its options and
//! its sbatch script. `sweep submit SPEC --slurm` registers the sweep, then submits one
//! job array of `sweep worker` processes (pull model: the array size is the parallelism,
//! not the number of runs; dependencies between pretrain and eval live in the store, not
//! in `--dependency`). Each array task `exec`s the worker, so Slurm's `--signal=B:USR1@90`
//! reaches it directly: it checkpoints and releases its run before the time limit. The
//! store URL, password included, reaches the workers only through the environment of
//! `sbatch` (`--export=ALL` with `SWEEP_DB` set), never through the script, which
//! `scontrol` shows to every user. Running `sbatch` and reading the queue are
//! `crate::slurm`'s.

use std::path::PathBuf;

use super::launch::WorkerLaunch;

/// What goes into the job array's script.
#[derive(Clone, Debug, PartialEq)]
pub struct SlurmOptions {
    /// Each array task's worker (its `exe`, data and runs directories on a shared
    /// filesystem; its device `auto`, the GPU Slurm allocated to the task, or `cpu`).
    pub worker: WorkerLaunch,
    /// Array tasks (parallel workers).
    pub workers: u32,
    pub partition: Option<String>,
    /// e.g. `gpu:1`.
    pub gres: Option<String>,
    /// Slurm time limit, e.g. `4:00:00`.
    pub time: Option<String>,
    pub cpus_per_task: u32,
    /// Where each task writes `%A_%a.out` (job id, task index).
    pub log_dir: PathBuf,
    /// Seconds before the time limit at which Slurm sends USR1 (graceful checkpoint).
    pub signal_secs: u32,
}

/// The sbatch script of the worker array. Holds no secret: the store comes from
/// `SWEEP_DB` in the environment `sbatch` exports.
pub fn script(o: &SlurmOptions) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let mut directive = |d: String| {
        s.push_str("#SBATCH ");
        s.push_str(&d);
        s.push('\n');
    };
    directive(format!("--job-name={}", job_name(&o.worker.sweep)));
    directive(format!("--array=0-{}", o.workers.max(1) - 1));
    directive(format!(
        "--output={}",
        o.log_dir.join("%A_%a.out").to_string_lossy()
    ));
    directive(format!("--signal=B:USR1@{}", o.signal_secs));
    directive("--ntasks=1".into());
    directive(format!("--cpus-per-task={}", o.cpus_per_task.max(1)));
    if let Some(p) = &o.partition {
        directive(format!("--partition={p}"));
    }
    if let Some(g) = &o.gres {
        directive(format!("--gres={g}"));
    }
    if let Some(t) = &o.time {
        directive(format!("--time={t}"));
    }
    s.push_str(
        "# One `sweep worker` per array task, claiming runs of the sweep from the store until\n\
         # none is left. The store (SWEEP_DB, with its password) comes from the environment\n\
         # of `sweep submit`, never from this script. `exec`: USR1 goes to the worker itself,\n\
         # which checkpoints and gives its run back before the time limit.\n",
    );
    s.push_str(&format!(
        "export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{}}}\"\n",
        o.cpus_per_task.max(1)
    ));
    s.push_str("exec ");
    s.push_str(&o.worker.shell_line());
    s.push('\n');
    s
}

fn job_name(sweep: &str) -> String {
    let clean: String = sweep
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("sweep-{clean}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SlurmOptions {
        SlurmOptions {
            worker: crate::sched::launch::tests::example(),
            workers: 4,
            partition: Some("gpu".into()),
            gres: Some("gpu:1".into()),
            time: Some("2:00:00".into()),
            cpus_per_task: 4,
            log_dir: "/shared/runs dir/slurm-logs".into(),
            signal_secs: 90,
        }
    }

    #[test]
    fn the_script_is_an_array_of_exec_workers_with_a_graceful_signal() {
        let s = script(&opts());
        for want in [
            "#SBATCH --array=0-3\n",
            "#SBATCH --signal=B:USR1@90\n",
            "#SBATCH --output=/shared/runs dir/slurm-logs/%A_%a.out\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --gres=gpu:1\n",
            "#SBATCH --time=2:00:00\n",
            "#SBATCH --job-name=sweep-aug_pairs\n",
            "exec /shared/bin/sweep --data-dir /shared/data --runs-dir '/shared/runs dir' worker \
             --sweep 'aug pairs' --device cuda:0 --loader-threads 2 --idle-exit 180 \
             --lease-secs 60 --max-attempts 3\n",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        assert!(!s.contains("--db"), "the store never appears in the script");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "#!/bin/bash");
        // sbatch stops reading directives at the first command.
        let first_cmd = lines.iter().position(|l| !l.starts_with('#')).unwrap();
        assert!(lines[first_cmd..].iter().all(|l| !l.starts_with("#SBATCH")));
    }
}
