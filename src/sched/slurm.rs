//! The Slurm executor (docs/ARCHITECTURE.md#multi-machine): `sweep submit SPEC --slurm`
//! registers the sweep, then submits one sbatch job array of `sweep worker` processes (pull
//! model: the array size is the parallelism, not the number of runs; dependencies between
//! pretrain and eval live in the store, not in `--dependency`). Each array task `exec`s the
//! worker, so Slurm's `--signal=B:USR1@90` reaches it directly: it checkpoints and releases
//! its run before the time limit. The store URL, password included, reaches the workers
//! only through the environment of `sbatch` (`--export=ALL` with `SWEEP_DB` set), never
//! through the sbatch command line or the script, both of which `scontrol` shows to every
//! user.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

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

/// Submits `script` with `sbatch --parsable`, the store location in `SWEEP_DB` of its
/// environment; returns the job id.
pub fn submit(script: &str, db: &str) -> Result<String> {
    let mut child = Command::new("sbatch")
        .args(["--parsable", "--export=ALL"])
        .env("SWEEP_DB", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running sbatch (is Slurm installed, and is this a submit host?)")?;
    child
        .stdin
        .take()
        .context("sbatch stdin")?
        .write_all(script.as_bytes())
        .context("writing the script to sbatch")?;
    let out = child.wait_with_output().context("waiting for sbatch")?;
    if !out.status.success() {
        bail!(
            "sbatch failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_job_id(&String::from_utf8_lossy(&out.stdout))
}

/// `sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`.
fn parse_job_id(stdout: &str) -> Result<String> {
    let id = stdout.trim().split(';').next().unwrap_or("").trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        bail!("sbatch printed no job id: {stdout:?}");
    }
    Ok(id.to_string())
}

/// One array task as squeue shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskState {
    /// The array's job id.
    pub array_job: String,
    /// `JOB_TASK` (or `JOB_[0-3]` for pending tasks squeue has not split yet).
    pub task: String,
    /// PENDING, RUNNING, COMPLETING, ...
    pub state: String,
    /// Node list, or why it is pending.
    pub reason: String,
}

/// The current user's array tasks that belong to `jobs`, or `None` when squeue is not
/// available or does not answer (not a Slurm host).
pub fn squeue(jobs: &[String]) -> Option<Vec<TaskState>> {
    let out = Command::new("squeue")
        .args(["--noheader", "--array", "--me", "--format=%F|%i|%T|%R"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(parse_squeue(&String::from_utf8_lossy(&out.stdout), jobs))
}

fn parse_squeue(text: &str, jobs: &[String]) -> Vec<TaskState> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(4, '|');
            let t = TaskState {
                array_job: f.next()?.trim().to_string(),
                task: f.next()?.trim().to_string(),
                state: f.next()?.trim().to_string(),
                reason: f.next().unwrap_or("").trim().to_string(),
            };
            jobs.contains(&t.array_job).then_some(t)
        })
        .collect()
}

/// One line per job: how many of its workers are in each state, e.g.
/// `slurm job 12 (4 workers): 3 RUNNING, 1 PENDING`.
pub fn describe(job: &str, workers: i64, tasks: &[TaskState]) -> String {
    let mine: Vec<&TaskState> = tasks.iter().filter(|t| t.array_job == job).collect();
    if mine.is_empty() {
        return format!("slurm job {job} ({workers} workers): not in squeue (finished)");
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for t in &mine {
        // A collapsed pending entry (`12_[2-3]`) stands for several tasks.
        let n = t
            .task
            .split_once("_[")
            .map(|(_, r)| range_len(r.trim_end_matches(']')))
            .unwrap_or(1);
        match counts.iter_mut().find(|(s, _)| *s == t.state) {
            Some((_, c)) => *c += n,
            None => counts.push((t.state.clone(), n)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("slurm job {job} ({workers} workers): {}", parts.join(", "))
}

/// Number of indices in a Slurm range list like `2-3,5` (ignoring `%limit`).
fn range_len(r: &str) -> usize {
    r.split('%')
        .next()
        .unwrap_or("")
        .split(',')
        .map(|p| match p.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum()
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

    #[test]
    fn job_ids_and_squeue_lines_parse() {
        assert_eq!(parse_job_id("1234\n").unwrap(), "1234");
        assert_eq!(parse_job_id("1234;cluster\n").unwrap(), "1234");
        assert!(parse_job_id("error").is_err());
        let text = "12|12_0|RUNNING|node1\n12|12_[2-3]|PENDING|(Resources)\n99|99_0|RUNNING|n\n";
        let tasks = parse_squeue(text, &["12".into()]);
        assert_eq!(tasks.len(), 2);
        assert_eq!(
            describe("12", 4, &tasks),
            "slurm job 12 (4 workers): 1 RUNNING, 2 PENDING"
        );
        assert_eq!(
            describe("13", 2, &tasks),
            "slurm job 13 (2 workers): not in squeue (finished)"
        );
    }
}
