//! Progress display for `sweep run`: indicatif bars on a terminal (an overall bar with
//! ETA and one bar per worker), plain log lines otherwise (Slurm logs, CI), nothing with
//! `--quiet`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::events::Event;

pub(crate) enum Progress {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        workers: Vec<ProgressBar>,
    },
    Lines,
    Quiet,
}

impl Progress {
    pub(crate) fn new(quiet: bool, workers: usize, total: u64, done: u64) -> Self {
        if quiet {
            return Progress::Quiet;
        }
        // Bars only for a person at a terminal; Slurm logs and CI get plain lines.
        if !std::io::stderr().is_terminal() || !std::io::stdout().is_terminal() {
            eprintln!("{done}/{total} stages done; {workers} worker(s) starting");
            return Progress::Lines;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let overall = multi.add(ProgressBar::new(total));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:40.green/white}] {pos}/{len} stages  {elapsed_precise}  ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        overall.set_prefix("sweep");
        overall.set_position(done);
        let style =
            ProgressStyle::with_template("{prefix:>8} [{bar:30.cyan/blue}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> ");
        let workers = (0..workers)
            .map(|i| {
                let b = multi.add(ProgressBar::new(1));
                b.set_style(style.clone());
                b.set_prefix(format!("w{i}"));
                b.set_message("starting");
                b.enable_steady_tick(Duration::from_millis(250));
                b
            })
            .collect();
        Progress::Bars {
            multi,
            overall,
            workers,
        }
    }

    /// Overall count of finished stages.
    pub(crate) fn set_done(&self, done: u64) {
        if let Progress::Bars { overall, .. } = self {
            overall.set_position(done);
        }
    }

    pub(crate) fn event(&self, worker: usize, e: &Event) {
        match self {
            Progress::Quiet => {}
            Progress::Lines => {
                if let Some(line) = e.log_line() {
                    eprintln!("[w{worker}] {line}");
                }
            }
            Progress::Bars { multi, workers, .. } => {
                let Some(bar) = workers.get(worker) else {
                    return;
                };
                let short = |r: &str| r[..8.min(r.len())].to_string();
                match e {
                    Event::Started { run, label, .. } => {
                        bar.reset();
                        bar.set_length(1);
                        bar.set_message(format!("{} {label}", short(run)));
                    }
                    Event::Step {
                        run,
                        epoch,
                        step,
                        total_steps,
                        loss,
                        images_per_sec,
                        ..
                    } => {
                        bar.set_length((*total_steps).max(1));
                        bar.set_position(*step as u64 + 1);
                        bar.set_message(format!(
                            "{} pretrain epoch {} loss {loss:.3} {images_per_sec:.0} img/s",
                            short(run),
                            epoch + 1
                        ));
                    }
                    Event::EvalProgress {
                        run,
                        done,
                        total,
                        what,
                    } => {
                        bar.set_length((*total).max(1) as u64);
                        bar.set_position(*done as u64);
                        bar.set_message(format!("{} {what}", short(run)));
                    }
                    Event::Finished { .. } => {
                        if let Some(line) = e.log_line() {
                            let _ = multi.println(line);
                        }
                    }
                    Event::Idle => bar.finish_with_message("idle"),
                    Event::Epoch { .. } | Event::Checkpoint { .. } => {}
                }
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Progress::Bars {
            overall, workers, ..
        } = self
        {
            for w in workers {
                w.finish_and_clear();
            }
            overall.finish();
        }
    }
}
