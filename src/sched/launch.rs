//! The command line of a `sweep worker` process, built in one place for both launchers:
//! the local workers that `sweep run` starts and the tasks of a Slurm job array. The store
//! is never on it: it travels in `SWEEP_DB` of the environment, so a PostgreSQL password
//! shows neither in `ps` nor in `scontrol show job`.

use std::ffi::OsString;
use std::path::PathBuf;

/// What a worker is told on its command line.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerLaunch {
    /// The `sweep` binary (absolute where other nodes run it).
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub runs_dir: PathBuf,
    pub sweep: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    pub loader_threads: usize,
    /// Seconds to wait for claimable stages before exiting.
    pub idle_exit_secs: u64,
    pub lease_secs: u64,
    pub max_attempts: i64,
    /// JSON event lines on stdout (read by `sweep run`'s coordinator).
    pub events_json: bool,
}

impl WorkerLaunch {
    /// The arguments after the binary.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--data-dir".into(),
            self.data_dir.clone().into(),
            "--runs-dir".into(),
            self.runs_dir.clone().into(),
            "worker".into(),
        ];
        for (flag, value) in [
            ("--sweep", self.sweep.clone()),
            ("--device", self.device.clone()),
            ("--loader-threads", self.loader_threads.max(1).to_string()),
            ("--idle-exit", self.idle_exit_secs.to_string()),
            ("--lease-secs", self.lease_secs.max(1).to_string()),
            ("--max-attempts", self.max_attempts.to_string()),
        ] {
            a.push(flag.into());
            a.push(value.into());
        }
        if self.events_json {
            a.push("--events-json".into());
        }
        a
    }

    /// The process to spawn (store, environment and stdio are the caller's).
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.exe);
        c.args(self.args());
        c
    }

    /// The whole command line for a shell script, each word quoted as bash needs.
    pub fn shell_line(&self) -> String {
        std::iter::once(self.exe.clone().into_os_string())
            .chain(self.args())
            .map(|w| shell_quote(&w.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Single-quotes `s` for bash (bare when it holds only safe characters).
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A GPU worker on a cluster's shared filesystem (a directory name with a space).
    pub(crate) fn example() -> WorkerLaunch {
        WorkerLaunch {
            exe: "/shared/bin/sweep".into(),
            data_dir: "/shared/data".into(),
            runs_dir: "/shared/runs dir".into(),
            sweep: "aug pairs".into(),
            device: "cuda:0".into(),
            loader_threads: 2,
            idle_exit_secs: 180,
            lease_secs: 60,
            max_attempts: 3,
            events_json: false,
        }
    }

    #[test]
    fn the_worker_line_quotes_what_bash_would_split_and_never_names_the_store() {
        let l = WorkerLaunch {
            sweep: "it's".into(),
            ..example()
        };
        assert_eq!(
            l.shell_line(),
            r"/shared/bin/sweep --data-dir /shared/data --runs-dir '/shared/runs dir' worker --sweep 'it'\''s' --device cuda:0 --loader-threads 2 --idle-exit 180 --lease-secs 60 --max-attempts 3"
        );
        assert_eq!(l.args().len(), 17);
        let json = WorkerLaunch {
            events_json: true,
            ..l
        };
        assert_eq!(json.args().last().unwrap(), "--events-json");
        assert!(!json.shell_line().contains("--db"));
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a$b"), "'a$b'");
    }
}
