//! Talking to Slurm, in one place: every command `sweep` runs against it (`sbatch` to
//! submit a job array, `squeue` to read the state of its tasks) and the parsing of what
//! they print. `sweep submit` submits through it; the sweep overview (`sweep status`, the
//! dashboard) reads the queue through it. The job array's script is the scheduler's
//! (`sched::slurm_array`): this module runs commands and knows nothing of workers.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Submits `script` with `sbatch --parsable`, the store location in `SWEEP_DB` of its
/// environment; returns the job id.
pub(crate) fn submit(script: &str, db: &str) -> Result<String> {
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
pub(crate) struct TaskState {
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
pub(crate) fn squeue(jobs: &[String]) -> Option<Vec<TaskState>> {
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

/// One line per job array of `jobs` (job id, workers), from the queue squeue gave (`None`:
/// squeue does not answer here): how many of its workers are in each state, or one line
/// naming them all when the queue cannot be read.
pub(crate) fn describe_arrays(jobs: &[(&str, i64)], queue: Option<&[TaskState]>) -> Vec<String> {
    match (jobs.is_empty(), queue) {
        (true, _) => Vec::new(),
        (false, Some(tasks)) => jobs
            .iter()
            .map(|(job, workers)| describe(job, *workers, tasks))
            .collect(),
        (false, None) => vec![format!(
            "slurm jobs {} (squeue does not answer here)",
            jobs.iter()
                .map(|(job, _)| *job)
                .collect::<Vec<_>>()
                .join(", ")
        )],
    }
}

/// One line per job: how many of its workers are in each state, e.g.
/// `slurm job 12 (4 workers): 3 RUNNING, 1 PENDING`.
fn describe(job: &str, workers: i64, tasks: &[TaskState]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn arrays_are_described_from_the_queue_or_named_when_it_cannot_be_read() {
        let tasks = parse_squeue("7|7_0|RUNNING|node1\n", &["7".into()]);
        assert_eq!(
            describe_arrays(&[("7", 2), ("8", 1)], Some(&tasks)),
            [
                "slurm job 7 (2 workers): 1 RUNNING",
                "slurm job 8 (1 workers): not in squeue (finished)"
            ]
        );
        assert_eq!(
            describe_arrays(&[("7", 2), ("8", 1)], None),
            ["slurm jobs 7, 8 (squeue does not answer here)"]
        );
        assert!(describe_arrays(&[], None).is_empty());
    }
}
