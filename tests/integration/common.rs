//! Shared helpers of the integration tests: a per-test temp dir with its own database,
//! data and checkpoint directories, a tiny CIFAR-10 fixture in the official binary layout,
//! and a way to run the `sweep` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A temp dir with `data/cifar-10-batches-bin` holding `per_class_file` images per class
    /// in each of the 5 training files and the test file (32x32, class-coloured patterns).
    pub fn new(per_class_file: usize) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        write_cifar10(
            &dir.path().join("data/cifar-10-batches-bin"),
            per_class_file,
        );
        Env { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("sweeps.db")
    }

    /// `sweep` with this env's database, data and runs directories, run in the temp dir.
    pub fn sweep(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sweep"));
        c.current_dir(self.path())
            .env("SWEEP_DB", self.db())
            .env("SWEEP_DATA_DIR", self.path().join("data"))
            .env("SWEEP_RUNS_DIR", self.path().join("runs"))
            .env("RAYON_NUM_THREADS", "1")
            .env_remove("SWEEP_LEASE_SECS");
        c
    }

    /// Runs `query` on this env's SQLite database: what the sweep stored, read directly.
    pub fn query<T>(&self, query: impl AsyncFnOnce(&sqlx::SqlitePool) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let url = format!("sqlite://{}", self.db().display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let out = query(&pool).await;
            pool.close().await;
            out
        })
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.sweep().args(args).output().expect("sweep runs")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes a CIFAR-10 binary directory: 5 training files and a test file, each with
/// `per_class` records of each class. Each class has its own colour and stripe pattern,
/// with per-image noise, so a network can learn something from it.
pub fn write_cifar10(dir: &Path, per_class: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 12345u64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 256) as u8
    };
    let names = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    for name in names {
        let mut bytes = Vec::with_capacity(per_class * 10 * 3073);
        for i in 0..per_class * 10 {
            let label = (i % 10) as u8;
            bytes.push(label);
            for c in 0..3u8 {
                for y in 0..32u32 {
                    for x in 0..32u32 {
                        let base = (label as u32 * 25 + c as u32 * 60) % 256;
                        let stripe = if (x + y * (label as u32 % 3 + 1)) % (label as u32 + 2) == 0 {
                            80
                        } else {
                            0
                        };
                        let noise = (rnd() / 4) as u32;
                        bytes.push(((base + stripe + noise) % 256) as u8);
                    }
                }
            }
        }
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let meta = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    std::fs::write(dir.join("batches.meta.txt"), meta).unwrap();
}

/// A tiny sweep: `n` temperatures x (pretrain + linear + kNN), a ConvNet on 40 images,
/// without the random-weights control (these tests count stages; `run::the_control_*`
/// turns it on).
pub fn tiny_spec(name: &str, temperatures: &[f64], epochs: usize) -> String {
    let temps: Vec<String> = temperatures.iter().map(|t| t.to_string()).collect();
    format!(
        "name: {name}
control: false
dataset: {{name: cifar10, train_subset: 40}}
base:
  encoder: {{arch: convnet, width: 1}}
  batch_size: 10
  epochs: {epochs}
  optimizer: {{kind: sgd, lr: 0.05, lr_scaling: none, warmup_epochs: 0}}
  evals:
    - {{kind: linear, train_subset: 100, test_subset: 20, epochs: 3, batch_size: 25}}
    - {{kind: knn, train_subset: 100, test_subset: 20, k: 10}}
grid:
  loss.temperature: [{}]
",
        temps.join(", ")
    )
}

/// A `sweep serve` process on 127.0.0.1 (a free port), stopped when dropped.
pub struct Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Server {
    /// Sends SIGTERM and waits for the process: its exit code (`None`: killed by a
    /// signal, or not ended within 30 s).
    pub fn stop(&mut self) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// GET `path`: status code and body (any status, never an error).
    pub fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        match ureq::get(&url).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("GET {url}: {e}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    /// Starts `sweep serve --bind 127.0.0.1:0` on this env's database and waits for the
    /// line that says where it listens.
    pub fn serve(&self) -> Server {
        use std::io::{BufRead, BufReader};
        let mut child = self
            .sweep()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("sweep serve starts");
        let out = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Server { child, base }
    }
}

/// Starts `sweep run SPEC`, sends SIGINT (Ctrl-C) when a log line contains `needle`, and
/// returns the exit code and the log lines after the signal.
pub fn ctrl_c_at(env: &Env, spec: &Path, needle: &str) -> (Option<i32>, Vec<String>) {
    let mut child = env
        .sweep()
        .args(["run", spec.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    for line in lines.by_ref() {
        if line.unwrap().contains(needle) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            break;
        }
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    (child.wait().unwrap().code(), rest)
}
