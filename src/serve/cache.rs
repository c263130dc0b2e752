//! What the dashboard keeps between requests, so that a refresh reads only what changed:
//! each sweep's stage rows (a done stage never changes again, so a refresh reads only
//! the others, under the sweep's version, which moves when its membership does), each
//! stage's parsed config (it never changes: a stage's id is the hash of its config),
//! the table metrics of each stage that is not running (a stage records metrics only
//! while it runs, and a stage that stops running changes state or attempt, which the
//! stamp sees), and each page's last rendered body with the change token it was
//! rendered under (an unchanged token serves it again without reading the sweep).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::report::ParsedConfig;
use crate::store::{MetricRecord, RunRecord, RunState};

/// Rendered bodies kept (pages of sweeps and runs); the oldest half goes beyond this.
const MAX_BODIES: usize = 64;

/// What a stage's cached metrics were read under: metrics change only while a stage
/// runs, and every way out of running changes one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    state: RunState,
    attempts: i64,
    finished_at: Option<i64>,
}

impl Stamp {
    fn of(run: &RunRecord) -> Stamp {
        Stamp {
            state: run.state,
            attempts: run.attempts,
            finished_at: run.finished_at,
        }
    }
}

/// A stage's kept metrics and what they were read under.
type KeptMetrics = (Stamp, Arc<[MetricRecord]>);

/// A rendered body: when it was kept (a counter), its change token, the body.
type KeptBody = (u64, String, Arc<String>);

#[derive(Default)]
pub struct Cache {
    /// Per sweep: its version (`updated_at`) and its stage rows in grid order.
    stages: Mutex<HashMap<String, (i64, Vec<RunRecord>)>>,
    configs: Mutex<HashMap<String, Arc<ParsedConfig>>>,
    metrics: Mutex<HashMap<String, KeptMetrics>>,
    /// The counter, then the bodies by key.
    bodies: Mutex<(u64, HashMap<String, KeptBody>)>,
}

/// A lock that a panicking request left poisoned still guards consistent data (every
/// write is one insert), so it is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cache {
    /// Takes the stage rows of `sweep` kept under `version` out of the cache (a refresh
    /// keeps them again; a request that comes meanwhile reads them all, as a first view).
    pub fn take_stages(&self, sweep: &str, version: i64) -> Option<Vec<RunRecord>> {
        let mut stages = lock(&self.stages);
        match stages.get(sweep) {
            Some((v, _)) if *v == version => stages.remove(sweep).map(|(_, rows)| rows),
            _ => None,
        }
    }

    /// Keeps the stage rows of `sweep` under `version`: first each config the rows carry,
    /// parsed, by id; then a copy of the rows without their config text. Rows are kept
    /// only with their configs, so kept rows, refreshed without config text, never need
    /// it again. Returns the rows, without config text.
    pub fn keep_stages(
        &self,
        sweep: &str,
        version: i64,
        mut rows: Vec<RunRecord>,
    ) -> Vec<RunRecord> {
        {
            let mut configs = lock(&self.configs);
            for r in &mut rows {
                let text = std::mem::take(&mut r.config);
                if !text.is_empty() && !configs.contains_key(&r.id) {
                    configs.insert(r.id.clone(), Arc::new(ParsedConfig::parse(r.stage, &text)));
                }
            }
        }
        lock(&self.stages).insert(sweep.to_string(), (version, rows.clone()));
        rows
    }

    /// The config of `stage`: kept, or parsed from the record (and kept) if not.
    pub fn config(&self, stage: &RunRecord) -> Arc<ParsedConfig> {
        let mut configs = lock(&self.configs);
        configs
            .entry(stage.id.clone())
            .or_insert_with(|| Arc::new(ParsedConfig::parse(stage.stage, &stage.config)))
            .clone()
    }

    /// The stages whose metrics must be read: running, or changed since they were kept.
    pub fn stale<'a>(&self, stages: &'a [RunRecord]) -> Vec<&'a str> {
        let metrics = lock(&self.metrics);
        stages
            .iter()
            .filter(|s| {
                s.state == RunState::Running
                    || metrics.get(&s.id).is_none_or(|(st, _)| *st != Stamp::of(s))
            })
            .map(|s| s.id.as_str())
            .collect()
    }

    /// Keeps the metrics just read for `read` (stages absent from `fresh` have none) and
    /// returns every stage's metrics, fresh or kept.
    pub fn merge_metrics(
        &self,
        stages: &[RunRecord],
        read: &[&str],
        mut fresh: HashMap<String, Vec<MetricRecord>>,
    ) -> HashMap<String, Arc<[MetricRecord]>> {
        let mut metrics = lock(&self.metrics);
        let by_id: HashMap<&str, &RunRecord> = stages.iter().map(|s| (s.id.as_str(), s)).collect();
        for id in read {
            let Some(run) = by_id.get(id) else { continue };
            let m: Arc<[MetricRecord]> = fresh.remove(*id).unwrap_or_default().into();
            metrics.insert(id.to_string(), (Stamp::of(run), m));
        }
        stages
            .iter()
            .filter_map(|s| {
                let (_, m) = metrics.get(&s.id)?;
                (!m.is_empty()).then(|| (s.id.clone(), m.clone()))
            })
            .collect()
    }

    /// The body rendered for `key` under change token `token`, if it is kept.
    pub fn body(&self, key: &str, token: &str) -> Option<Arc<String>> {
        let bodies = lock(&self.bodies);
        match bodies.1.get(key) {
            Some((_, t, body)) if t == token => Some(body.clone()),
            _ => None,
        }
    }

    /// Keeps `body`, rendered for `key` under `token`.
    pub fn keep_body(&self, key: &str, token: &str, body: Arc<String>) {
        let mut guard = lock(&self.bodies);
        let (clock, bodies) = &mut *guard;
        *clock += 1;
        if bodies.len() >= MAX_BODIES && !bodies.contains_key(key) {
            let mut ages: Vec<u64> = bodies.values().map(|(age, _, _)| *age).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            bodies.retain(|_, (age, _, _)| *age > cut);
        }
        bodies.insert(key.to_string(), (*clock, token.to_string(), body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StageKind;

    fn stage(id: &str, state: RunState, attempts: i64) -> RunRecord {
        RunRecord {
            id: id.into(),
            stage: StageKind::Pretrain,
            parent_id: None,
            label: "pretrain".into(),
            config: "{}".into(),
            dataset_fingerprint: "f".into(),
            state,
            attempts,
            lease_owner: None,
            lease_host: None,
            heartbeat_at: None,
            started_at: None,
            finished_at: None,
            compute_seconds: 0.0,
            failure: None,
            position: 0,
            cell: "{}".into(),
        }
    }

    fn loss(v: f64) -> MetricRecord {
        MetricRecord {
            name: "epoch/loss".into(),
            step: 0,
            value: v,
        }
    }

    #[test]
    fn metrics_are_read_again_only_for_running_or_changed_stages() {
        let cache = Cache::default();
        let mut stages = vec![
            stage("done", RunState::Done, 1),
            stage("running", RunState::Running, 1),
            stage("queued", RunState::Queued, 0),
        ];
        // Nothing kept: everything is read.
        let read = cache.stale(&stages);
        assert_eq!(read, ["done", "running", "queued"]);
        let fresh = HashMap::from([
            ("done".to_string(), vec![loss(1.0)]),
            ("running".to_string(), vec![loss(2.0)]),
        ]);
        let all = cache.merge_metrics(&stages, &read, fresh);
        assert_eq!(all["done"][0].value, 1.0);
        assert!(!all.contains_key("queued"));
        // Unchanged: only the running stage is read again.
        assert_eq!(cache.stale(&stages), ["running"]);
        // The queued stage starts (state and attempt change): it is read again too; the
        // kept metrics of the others stay.
        stages[2] = stage("queued", RunState::Running, 1);
        let read = cache.stale(&stages);
        assert_eq!(read, ["running", "queued"]);
        let fresh = HashMap::from([("queued".to_string(), vec![loss(3.0)])]);
        let all = cache.merge_metrics(&stages, &read, fresh);
        assert_eq!(all["done"][0].value, 1.0);
        assert_eq!(all["queued"][0].value, 3.0);
        // The running stage read this time without rows has none now.
        assert!(!all.contains_key("running"));
    }

    #[test]
    fn a_body_is_served_again_only_under_the_token_it_was_rendered_under() {
        let cache = Cache::default();
        cache.keep_body("sweep/a", "t1", Arc::new("one".into()));
        assert_eq!(
            cache.body("sweep/a", "t1").as_deref().map(String::as_str),
            Some("one")
        );
        assert!(cache.body("sweep/a", "t2").is_none());
        assert!(cache.body("sweep/b", "t1").is_none());
        // Bounded: the oldest bodies go.
        for i in 0..(3 * MAX_BODIES) {
            cache.keep_body(&format!("k{i}"), "t", Arc::new(String::new()));
        }
        assert!(lock(&cache.bodies).1.len() <= MAX_BODIES);
        assert!(cache.body("sweep/a", "t1").is_none());
        assert!(cache
            .body(&format!("k{}", 3 * MAX_BODIES - 1), "t")
            .is_some());
    }
}
