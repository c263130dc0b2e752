//! A real browser on the live dashboard: headless Chromium (the distribution's package)
//! opens a sweep's page while the sweep runs and, without any reload, sees a stage go
//! from queued to done. Driven over the DevTools protocol (a WebSocket). Skipped with a
//! message where Chromium is absent; `SWEEP_REQUIRE_BROWSER=1` (CI) makes that a failure.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::common::{ctrl_c_at, text, tiny_spec, Env};

/// The Chromium binary: `SWEEP_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SWEEP_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and connects to its one page.
    fn start(exe: &PathBuf) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        // Chromium writes the port it chose into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let start = Instant::now();
        let port = loop {
            if let Ok(s) = std::fs::read_to_string(&port_file) {
                if let Some(p) = s.lines().next().and_then(|l| l.trim().parse::<u16>().ok()) {
                    break p;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromium did not open its DevTools port"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let list = ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let targets: Value = serde_json::from_str(&list).unwrap();
        let ws_url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (ws, _) = tungstenite::connect(ws_url).expect("DevTools WebSocket");
        Browser {
            child,
            _profile: profile,
            ws,
            next_id: 1,
        }
    }

    /// Sends a DevTools command and returns its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let m = self.ws.read().unwrap();
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page; its value as JSON.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }
}

/// (short id, state) of every row of the page's runs table.
const ROWS_JS: &str = "Array.from(document.querySelectorAll('table.runs tbody tr'))\
    .map(function(tr){return [tr.cells[0].textContent, tr.cells[3].textContent];})";

#[test]
fn a_browser_sees_a_stage_go_from_queued_to_done_without_reloading() {
    let Some(exe) = chromium() else {
        assert!(
            std::env::var("SWEEP_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "SWEEP_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium; SWEEP_CHROMIUM=path)");
        return;
    };
    let env = Env::new(2);
    let spec = env.write("b.yaml", &tiny_spec("b", &[0.5, 0.2], 3));
    // Register the sweep and stop it at once (Ctrl-C after the first epoch): every stage
    // queued again, so the page opens on a sweep with work left.
    let (code, log) = ctrl_c_at(&env, &spec, "epoch 1:");
    assert_eq!(code, Some(130), "{log:?}");

    let server = env.serve();
    let mut browser = Browser::start(&exe);
    browser.call("Page.enable", json!({}));
    browser.call(
        "Page.navigate",
        json!({"url": format!("{}/sweep/b", server.base)}),
    );
    let start = Instant::now();
    let rows = loop {
        let rows = browser.eval(ROWS_JS);
        if rows.as_array().is_some_and(|r| r.len() == 6) {
            break rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the page did not load: {rows}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let queued: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[1] == "queued")
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    // Ctrl-C lands after the first epoch line; on a loaded machine a short stage may have
    // finished by then, so the test needs some queued stage, not all six.
    assert!(
        !queued.is_empty(),
        "no stage queued before the sweep resumes: {rows}"
    );
    // A mark on this document: a reload or navigation would lose it.
    browser.eval("window.sweepMark = 42");

    let mut resume = env
        .sweep()
        .args(["resume", "b", "--quiet"])
        .spawn()
        .unwrap();
    let watched = queued.last().unwrap().clone();
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let rows = browser.eval(ROWS_JS);
        let state = rows
            .as_array()
            .and_then(|r| r.iter().find(|x| x[0] == watched.as_str()))
            .map(|x| x[1].as_str().unwrap_or("").to_string())
            .unwrap_or_default();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "done" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "stage {watched} never showed done; states seen: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        browser.eval("window.sweepMark"),
        json!(42),
        "the page was not reloaded"
    );
    assert_eq!(seen.first().map(String::as_str), Some("queued"), "{seen:?}");
    let status = resume.wait().unwrap();
    assert!(status.success(), "{}", text(&env.run(&["status", "b"])));
}
