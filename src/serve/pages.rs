//! The pages as HTML, from the views `gather` reads: the list of sweeps, one sweep (the
//! report's figures as inline SVG, its tables, its stages), one stage (config, curves,
//! checkpoints, evaluations), and the 404 and error pages. Every string that came from
//! a spec, a run or the store is escaped ([`Esc`], [`table`]). No I/O here.

use std::fmt::Write as _;

use crate::overview::SweepOverview;
use crate::report::{self, compact, Figure, Section};
use crate::store::StageKind;
use crate::units::human_duration;
use crate::vocab::{metric, short_id as short};

use super::gather::{RunView, SweepView, CURVES_MAX_RUNS};
use super::html::{report_text, seg, table, Esc};

pub fn sweep_url(name: &str) -> String {
    format!("/sweep/{}", seg(name))
}

pub fn run_url(id: &str) -> String {
    format!("/run/{}", seg(id))
}

/// A progress bar: done, running and failed shares of `total`.
fn bar(done: usize, running: usize, failed: usize, total: usize) -> String {
    let pct = |n: usize| 100.0 * n as f64 / total.max(1) as f64;
    format!(
        "<div class=\"bar\" title=\"{done} done, {running} running, {failed} failed of {total}\">\
         <span class=\"b-done\" style=\"width:{:.2}%\"></span><span class=\"b-running\" style=\"width:{:.2}%\"></span>\
         <span class=\"b-failed\" style=\"width:{:.2}%\"></span></div>",
        pct(done),
        pct(running),
        pct(failed)
    )
}

/// The list of sweeps (the live part of `/`).
pub fn sweeps(list: &[SweepOverview]) -> String {
    let mut s = String::from("<h1>Sweeps</h1>");
    if list.is_empty() {
        s.push_str(
            "<p>No sweeps in this store yet: <code>sweep run SPEC</code> registers one.</p>",
        );
        return s;
    }
    s.push_str(
        "<table class=\"sweeps\"><thead><tr><th>sweep</th><th>profile</th><th>progress</th>\
         <th>done</th><th>running</th><th>queued</th><th>failed</th><th>time left</th>\
         <th>workers</th><th>slurm</th></tr></thead><tbody>",
    );
    for o in list {
        let p = &o.progress;
        let (done, running, queued, failed) = (p.done, p.running, p.queued, p.failed);
        let total = p.total();
        let failed_cls = if failed > 0 {
            " class=\"st-failed\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{done}/{total}</td>\
             <td>{running}</td><td>{queued}</td><td{failed_cls}>{failed}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            Esc(&sweep_url(&o.name)),
            Esc(&o.name),
            Esc(o.profile.as_deref().unwrap_or("—")),
            bar(done, running, failed, total),
            Esc(&p.time_left_text()),
            Esc(&p.workers_text()),
            Esc(&o.slurm.join("; ")),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// A figure drawn by the report's own code, inline SVG (plotters escapes its text).
fn figure(f: &Figure) -> String {
    match f.svg() {
        Ok(svg) => format!(
            "<figure id=\"fig-{}\">{svg}<figcaption>{}</figcaption></figure>",
            Esc(&f.id),
            Esc(&f.caption)
        ),
        Err(e) => format!(
            "<p class=\"note\">figure {}: {}</p>",
            Esc(&f.id),
            Esc(&e.to_string())
        ),
    }
}

/// One section of the report: its text, figures (inline SVG drawn by the report's own
/// code), tables and the paper's lines.
fn section(sec: &Section) -> String {
    let mut s = format!("<h2>{}</h2>", Esc(&sec.title));
    for t in &sec.text {
        s.push_str(&report_text(t));
    }
    for f in &sec.figures {
        s.push_str(&figure(f));
    }
    for t in &sec.tables {
        let _ = write!(s, "<p><b>{}</b></p>", Esc(&t.caption));
        s.push_str(&table(
            &format!("report {}", t.id),
            &t.header,
            &t.plain_rows(),
            &[],
        ));
        for n in &t.notes {
            let _ = write!(s, "<p class=\"note\">{}</p>", Esc(n));
        }
    }
    if !sec.paper.is_empty() {
        s.push_str("<p class=\"note\">");
        for l in &sec.paper {
            let _ = write!(s, "{}<br>", Esc(l));
        }
        s.push_str("</p>");
    }
    s
}

fn cell_text(cell: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(cell) {
        Ok(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", compact(v)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The runs table: the view's page of it (one row per stage, grid order) and the links
/// to the other pages.
fn runs_table(v: &SweepView) -> String {
    let (name, page, pages, rows_of_page) = (&v.sweep.name, v.page, v.pages, &v.stages);
    let header: Vec<String> = [
        "run",
        "stage",
        "cell",
        "state",
        "attempt",
        "epoch",
        "loss",
        "top-1 (%)",
        "host",
        "failure",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = Vec::with_capacity(rows_of_page.len());
    let mut links = Vec::with_capacity(rows_of_page.len());
    for (i, r) in rows_of_page.iter().enumerate() {
        links.push((i, 0, run_url(&r.run.id)));
        rows.push(vec![
            short(&r.run.id).to_string(),
            r.run.label.clone(),
            cell_text(&r.run.cell),
            r.run.state.as_str().to_string(),
            r.run.attempts.to_string(),
            r.epochs
                .map(|(d, p)| format!("{d}/{p}"))
                .unwrap_or_default(),
            r.loss.map(|l| format!("{l:.4}")).unwrap_or_default(),
            r.top1.map(|t| format!("{t:.2}")).unwrap_or_default(),
            r.run.lease_host.clone().unwrap_or_default(),
            r.run.failure.clone().unwrap_or_default(),
        ]);
    }
    let mut s = table("runs", &header, &rows, &links);
    if pages > 1 {
        s.push_str("<p class=\"pages\">page ");
        for p in 0..pages {
            if p == page {
                let _ = write!(s, "<b>{}</b> ", p + 1);
            } else {
                let _ = write!(
                    s,
                    "<a href=\"{}?page={}\">{}</a> ",
                    Esc(&sweep_url(name)),
                    p + 1,
                    p + 1
                );
            }
        }
        s.push_str("</p>");
    }
    s
}

/// One sweep (the live part of `/sweep/NAME`), with the page of its runs table the view
/// holds.
pub fn sweep(v: &SweepView) -> String {
    let name = &v.sweep.name;
    let p = &v.progress;
    let total = p.total();
    let mut s = format!("<h1>Sweep {}</h1>", Esc(name));
    let _ = write!(
        s,
        "<table class=\"facts\"><tbody>\
         <tr><th>progress</th><td>{}{}</td></tr>\
         <tr><th>time left</th><td>{}</td></tr><tr><th>workers</th><td>{}</td></tr>\
         <tr><th>spec</th><td>{}{}</td></tr></tbody></table>",
        bar(p.done, p.running, p.failed, total),
        Esc(&p.stages_text()),
        Esc(&p.time_left_text()),
        Esc(&p.workers_text()),
        Esc(&v.sweep.spec_path),
        Esc(&v
            .sweep
            .profile
            .as_ref()
            .map(|p| format!(" (profile {p})"))
            .unwrap_or_default()),
    );
    for w in &v.warnings {
        let _ = write!(s, "<p class=\"note\">warning: {}</p>", Esc(w));
    }
    for sec in &v.sections {
        s.push_str(&section(sec));
    }
    if v.curves_skipped {
        let _ = write!(
            s,
            "<p class=\"note\">Training curves: more than {CURVES_MAX_RUNS} runs; each run's page has its curves, <code>sweep report</code> draws them all.</p>"
        );
    }
    let _ = write!(s, "<h2>Runs ({total} stages)</h2>");
    s.push_str(&runs_table(v));
    let _ = write!(
        s,
        "<details><summary>spec</summary><pre>{}</pre></details>",
        Esc(&v.sweep.spec_text)
    );
    s
}

fn ms_time(ms: Option<i64>) -> String {
    ms.map(|m| {
        let secs = m.div_euclid(1000);
        let day = secs.rem_euclid(86_400);
        format!(
            "{:02}:{:02}:{:02} UTC",
            day / 3600,
            (day % 3600) / 60,
            day % 60
        )
    })
    .unwrap_or_else(|| "—".into())
}

/// One stage (the live part of `/run/ID`).
pub fn run(v: &RunView) -> String {
    let r = &v.run;
    let mut s = format!(
        "<h1>{} {} <small>{}</small></h1>",
        r.stage.as_str(),
        Esc(short(&r.id)),
        Esc(&r.label)
    );
    let sweeps: Vec<String> = v
        .sweeps
        .iter()
        .map(|n| format!("<a href=\"{}\">{}</a>", Esc(&sweep_url(n)), Esc(n)))
        .collect();
    let parent = r
        .parent_id
        .as_ref()
        .map(|p| format!("<a href=\"{}\">{}</a>", Esc(&run_url(p)), Esc(short(p))))
        .unwrap_or_else(|| "—".into());
    let _ = write!(
        s,
        "<table class=\"facts\"><tbody><tr><th>id</th><td>{}</td></tr>\
         <tr><th>state</th><td class=\"st-{}\">{}</td></tr><tr><th>attempt</th><td>{}</td></tr>\
         <tr><th>host</th><td>{}</td></tr><tr><th>started</th><td>{}</td></tr><tr><th>finished</th><td>{}</td></tr>\
         <tr><th>compute</th><td>{}</td></tr><tr><th>cell</th><td>{}</td></tr><tr><th>sweeps</th><td>{}</td></tr>\
         <tr><th>pretrain</th><td>{parent}</td></tr><tr><th>failure</th><td class=\"st-failed\">{}</td></tr></tbody></table>",
        Esc(&r.id),
        r.state.as_str(),
        r.state.as_str(),
        r.attempts,
        Esc(r.lease_host.as_deref().unwrap_or("—")),
        ms_time(r.started_at),
        ms_time(r.finished_at),
        Esc(&human_duration(r.compute_seconds)),
        Esc(&cell_text(&r.cell)),
        sweeps.join(", "),
        Esc(r.failure.as_deref().unwrap_or("")),
    );
    if r.stage == StageKind::Pretrain {
        s.push_str("<h2>Training curves</h2>");
        let fig = report::run_curves(
            &format!("run_{}", short(&r.id)),
            &format!("{} {}", r.label, short(&r.id)),
            &v.metrics,
        );
        if v.metrics.iter().any(|m| m.name == metric::TRAIN_LOSS) {
            s.push_str(&figure(&fig));
        } else {
            s.push_str("<p class=\"note\">No training step recorded yet.</p>");
        }
        s.push_str("<h2>Evaluations</h2>");
        let header: Vec<String> = [
            "evaluation",
            "run",
            "state",
            "attempt",
            "top-1 (%)",
            "top-5 (%)",
            "failure",
        ]
        .map(String::from)
        .to_vec();
        let pct = |x: &Option<f64>| x.map(|t| format!("{t:.2}")).unwrap_or_default();
        let rows: Vec<Vec<String>> = v
            .evaluations
            .iter()
            .map(|(e, t1, t5)| {
                vec![
                    e.label.clone(),
                    short(&e.id).to_string(),
                    e.state.as_str().to_string(),
                    e.attempts.to_string(),
                    pct(t1),
                    pct(t5),
                    e.failure.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let links: Vec<(usize, usize, String)> = v
            .evaluations
            .iter()
            .enumerate()
            .map(|(i, (e, _, _))| (i, 1, run_url(&e.id)))
            .collect();
        s.push_str(&table("evals", &header, &rows, &links));
        s.push_str("<h2>Checkpoints</h2>");
        let rows: Vec<Vec<String>> = v
            .checkpoints
            .iter()
            .map(|c| {
                vec![
                    c.step.to_string(),
                    c.epoch.to_string(),
                    c.path.display().to_string(),
                    c.sha256.clone(),
                ]
            })
            .collect();
        let header: Vec<String> = ["step", "epoch", "path", "sha256"]
            .map(String::from)
            .to_vec();
        s.push_str(&table("checkpoints", &header, &rows, &[]));
    } else {
        s.push_str("<h2>Results</h2>");
        let rows: Vec<Vec<String>> = v
            .metrics
            .iter()
            .map(|m| vec![m.name.clone(), m.step.to_string(), format!("{}", m.value)])
            .collect();
        let header: Vec<String> = ["metric", "step", "value"].map(String::from).to_vec();
        s.push_str(&table("metrics", &header, &rows, &[]));
    }
    let config = serde_json::from_str::<serde_json::Value>(&r.config)
        .ok()
        .and_then(|c| serde_json::to_string_pretty(&c).ok())
        .unwrap_or_else(|| r.config.clone());
    let _ = write!(s, "<h2>Config</h2><pre>{}</pre>", Esc(&config));
    s
}

/// The body of a 404 page.
pub fn not_found(what: &str) -> String {
    format!(
        "<h1>Not found</h1><p>{}</p><p><a href=\"/\">All sweeps</a></p>",
        Esc(what)
    )
}

/// The body of a 500 page.
pub fn error(message: &str) -> String {
    format!(
        "<h1>The store could not be read</h1><pre>{}</pre><p>The page retries by itself.</p>",
        Esc(message)
    )
}
