//! What the dashboard keeps between requests, so that a refresh reads only what changed:
//! per sweep, its stage rows and their metrics as of the version they were read under
//! (a refresh reads only the stages the store's change counter stamped since, with
//! their metrics, and patches them in; a new membership reads everything again), each
//! stage's parsed config (it never changes: a stage's id is the hash of its config;
//! each distinct text is parsed once, for all the stages that share it), and
//! each page's last rendered body with the change token it was rendered under (an
//! unchanged token serves it again without reading the sweep).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::report::ParsedConfig;
use crate::store::{LastMetric, MetricRecord, RunRecord, SharedConfig, SweepVersion};
use crate::vocab::metric;

/// Rendered bodies kept (pages of sweeps and runs); the oldest half goes beyond this.
const MAX_BODIES: usize = 64;

/// A rendered body: when it was kept (a counter), its change token, the body.
type KeptBody = (u64, String, Arc<String>);

/// Metrics of stages as a sweep's page reads them, by stage id: the records it shows
/// (every step's, or, where it draws no curves, each metric's last step only) and the
/// epochs each pretrain has finished (how many steps its `epoch/loss` has).
#[derive(Default)]
pub struct ShownMetrics {
    pub records: HashMap<String, Vec<MetricRecord>>,
    pub epochs: HashMap<String, usize>,
}

impl ShownMetrics {
    /// From every step's records.
    pub fn every(records: HashMap<String, Vec<MetricRecord>>) -> ShownMetrics {
        let epochs = records
            .iter()
            .map(|(id, m)| (id.clone(), epochs_in(m.iter())))
            .collect();
        ShownMetrics { records, epochs }
    }

    /// From each metric's last step.
    pub fn last(last: HashMap<String, Vec<LastMetric>>) -> ShownMetrics {
        let mut shown = ShownMetrics::default();
        for (id, m) in last {
            let epochs = m
                .iter()
                .find(|m| m.last.name == metric::EPOCH_LOSS)
                .map_or(0, |m| m.steps);
            shown.epochs.insert(id.clone(), epochs);
            shown
                .records
                .insert(id, m.into_iter().map(|m| m.last).collect());
        }
        shown
    }
}

fn epochs_in<'a>(m: impl Iterator<Item = &'a MetricRecord>) -> usize {
    m.filter(|m| m.name == metric::EPOCH_LOSS).count()
}

/// One sweep's stages as of `version`: rows in grid order (without config text: the
/// configs are kept parsed, by id) and the metrics of each stage that has any, with
/// its epochs finished.
pub struct KeptSweep {
    pub version: SweepVersion,
    pub rows: Vec<RunRecord>,
    pub metrics: HashMap<String, Arc<[MetricRecord]>>,
    pub epochs: HashMap<String, usize>,
    /// Row index by stage id.
    index: HashMap<String, usize>,
}

impl KeptSweep {
    pub fn new(version: SweepVersion, rows: Vec<RunRecord>, shown: ShownMetrics) -> KeptSweep {
        let index = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        KeptSweep {
            version,
            rows,
            metrics: (shown.records.into_iter())
                .map(|(k, v)| (k, v.into()))
                .collect(),
            epochs: shown.epochs,
            index,
        }
    }

    /// Brings the kept stages to `version`: the stages that changed since (`moved`, read
    /// again) replace theirs, with their metrics read again (`fresh`: a moved stage
    /// absent from it has none). Stages that are not members are ignored (a membership
    /// change reads everything anew instead).
    pub fn patch(&mut self, version: SweepVersion, moved: Vec<RunRecord>, mut fresh: ShownMetrics) {
        for r in moved {
            let Some(&i) = self.index.get(&r.id) else {
                continue;
            };
            match fresh.epochs.remove(&r.id) {
                Some(e) => self.epochs.insert(r.id.clone(), e),
                None => self.epochs.remove(&r.id),
            };
            match fresh.records.remove(&r.id) {
                Some(m) => {
                    self.metrics.insert(r.id.clone(), m.into());
                }
                None => {
                    self.metrics.remove(&r.id);
                }
            }
            self.rows[i] = r;
        }
        self.version = version;
    }
}

/// One sweep's kept stages, behind a lock held across the reads that refresh them, so
/// that a second request for the sweep waits for the first (then likely finds its body)
/// instead of reading the sweep too.
pub type SweepSlot = Arc<tokio::sync::Mutex<Option<KeptSweep>>>;

#[derive(Default)]
pub struct Cache {
    sweeps: Mutex<HashMap<String, SweepSlot>>,
    configs: Mutex<HashMap<String, Arc<ParsedConfig>>>,
    /// The counter, then the bodies by key.
    bodies: Mutex<(u64, HashMap<String, KeptBody>)>,
}

/// Each config parsed once, with the stages that have it (CPU work: the caller runs it off
/// the async threads).
pub fn parse_configs(configs: Vec<SharedConfig>) -> Vec<(Vec<String>, Arc<ParsedConfig>)> {
    configs
        .into_iter()
        .map(|c| (c.ids, Arc::new(ParsedConfig::parse(c.stage, &c.text))))
        .collect()
}

/// A lock that a panicking request left poisoned still guards consistent data (every
/// write is one insert), so it is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cache {
    /// The slot of sweep `name` (empty until its first view).
    pub fn sweep(&self, name: &str) -> SweepSlot {
        lock(&self.sweeps)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// `configs` less those whose stages all have theirs kept already.
    pub fn unknown_configs(&self, mut configs: Vec<SharedConfig>) -> Vec<SharedConfig> {
        let kept = lock(&self.configs);
        configs.retain(|c| c.ids.iter().any(|id| !kept.contains_key(id)));
        configs
    }

    /// The ids of those of `rows` whose config is not kept.
    pub fn without_config<'a>(&self, rows: &'a [RunRecord]) -> Vec<&'a str> {
        let kept = lock(&self.configs);
        rows.iter()
            .filter(|r| !kept.contains_key(&r.id))
            .map(|r| r.id.as_str())
            .collect()
    }

    /// Keeps configs parsed by [`parse_configs`], by stage id.
    pub fn keep_configs(&self, parsed: Vec<(Vec<String>, Arc<ParsedConfig>)>) {
        let mut kept = lock(&self.configs);
        for (ids, config) in parsed {
            for id in ids {
                kept.insert(id, config.clone());
            }
        }
    }

    /// Runs `f` with the config of a stage (kept, or parsed from the record (and kept)
    /// if not), the kept configs locked once for all of its calls.
    pub fn with_configs<T>(
        &self,
        f: impl FnOnce(&dyn Fn(&RunRecord) -> Arc<ParsedConfig>) -> T,
    ) -> T {
        let configs = std::cell::RefCell::new(lock(&self.configs));
        let config_of = |stage: &RunRecord| {
            let mut kept = configs.borrow_mut();
            if let Some(c) = kept.get(&stage.id) {
                return c.clone();
            }
            let c = Arc::new(ParsedConfig::parse(stage.stage, &stage.config));
            kept.insert(stage.id.clone(), c.clone());
            c
        };
        f(&config_of)
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
    use crate::store::{RunState, StageKind};

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

    fn version(changed: i64) -> SweepVersion {
        SweepVersion {
            membership: 1,
            changed,
        }
    }

    #[test]
    fn a_patch_replaces_the_moved_stages_and_their_metrics_only() {
        let mut kept = KeptSweep::new(
            version(1),
            vec![
                stage("done", RunState::Done, 1),
                stage("running", RunState::Running, 1),
                stage("queued", RunState::Queued, 0),
            ],
            ShownMetrics::every(HashMap::from([
                ("done".to_string(), vec![loss(1.0)]),
                ("running".to_string(), vec![loss(2.0)]),
            ])),
        );
        // The running stage was given back and its metrics read again (none now), the
        // queued one started and recorded a loss; a stage of another sweep is ignored.
        kept.patch(
            version(5),
            vec![
                stage("running", RunState::Queued, 0),
                stage("queued", RunState::Running, 1),
                stage("elsewhere", RunState::Done, 1),
            ],
            ShownMetrics::every(HashMap::from([("queued".to_string(), vec![loss(3.0)])])),
        );
        assert_eq!(kept.version, version(5));
        let states: Vec<_> = kept.rows.iter().map(|r| (r.id.as_str(), r.state)).collect();
        assert_eq!(
            states,
            [
                ("done", RunState::Done),
                ("running", RunState::Queued),
                ("queued", RunState::Running)
            ]
        );
        assert_eq!(kept.metrics["done"][0].value, 1.0);
        assert!(!kept.metrics.contains_key("running"));
        assert_eq!(kept.metrics["queued"][0].value, 3.0);
        assert_eq!(kept.epochs.get("done"), Some(&1));
        assert_eq!(kept.epochs.get("running"), None);
        assert_eq!(kept.epochs.get("queued"), Some(&1));
    }

    #[test]
    fn a_shared_config_is_parsed_once_and_kept_for_each_of_its_stages() {
        let cache = Cache::default();
        let shared = |ids: &[&str]| SharedConfig {
            stage: StageKind::Pretrain,
            text: "{\"epochs\": 7}".into(),
            ids: ids.iter().map(|s| s.to_string()).collect(),
        };
        let rows = [stage("a", RunState::Done, 1), stage("b", RunState::Done, 1)];
        assert_eq!(cache.without_config(&rows), ["a", "b"]);
        cache.keep_configs(parse_configs(vec![shared(&["a", "b"])]));
        assert!(cache.without_config(&rows).is_empty());
        let (a, b) = cache.with_configs(|config_of| (config_of(&rows[0]), config_of(&rows[1])));
        assert_eq!(a.json()["epochs"], 7);
        // One text, parsed once.
        assert!(Arc::ptr_eq(&a, &b));
        // Read again with a new stage: only the config of that one is parsed again.
        let again = cache.unknown_configs(vec![shared(&["a", "b"]), shared(&["a", "c"])]);
        assert_eq!(again, [shared(&["a", "c"])]);
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
