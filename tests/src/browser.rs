//! Headless Chromium for the dashboard's tests, driven over the DevTools protocol on
//! `--remote-debugging-pipe` (NUL-terminated JSON messages on file descriptors 3 and 4),
//! so no websocket client is needed; a page is a target the browser session attaches to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Instant;

use serde_json::{Value, json};

use crate::durable::{DEADLINE, wait_for};

/// The Chromium executable, from `PATH` (Debian's `chromium`).
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// A headless Chromium with a profile of its own.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: Receiver<Value>,
    /// Replies and events read but not asked for yet.
    held: Vec<Value>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// One tab.
#[derive(Debug, Clone)]
pub struct Tab {
    session: String,
}

impl Browser {
    /// Starts Chromium; panics (failing the test) when it is not installed.
    pub fn start() -> Browser {
        let exe = chromium().expect(
            "chromium is not installed: the dashboard's browser tests need Debian's `chromium`",
        );
        let profile = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(profile.path().join("stderr")).unwrap();
        // Its fd 3 reads what the test writes on stdin; fd 4 is its replies on stdout.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec 3<&0 4>&1 </dev/null >/dev/null; exec \"$@\"")
            .arg("sh")
            .arg(exe)
            .args([
                "--headless",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .env("HOME", profile.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let to = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, from) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            loop {
                let mut buf = Vec::new();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop_if(|b| *b == 0);
                        if let Ok(v) = serde_json::from_slice(&buf)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to,
            from,
            held: Vec::new(),
            next_id: 1,
            _profile: profile,
        }
    }

    /// Sends `method` with `params` (in `tab`'s session, or the browser's) and waits for
    /// its reply; panics on a protocol error.
    pub fn call(&mut self, tab: Option<&Tab>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(tab) = tab {
            msg["sessionId"] = json!(tab.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        self.to.flush().unwrap();
        let start = Instant::now();
        loop {
            if let Some(k) = self.held.iter().position(|m| m["id"] == id) {
                let reply = self.held.remove(k);
                assert!(
                    reply.get("error").is_none(),
                    "{method} failed: {}",
                    reply["error"]
                );
                return reply["result"].clone();
            }
            let left = DEADLINE.saturating_sub(start.elapsed());
            assert!(!left.is_zero(), "no reply to {method} within {DEADLINE:?}");
            match self.from.recv_timeout(left) {
                Ok(m) if m.get("id").is_some() => self.held.push(m),
                // Events are not followed; only replies are awaited.
                Ok(_) => {}
                Err(e) => panic!("chromium stopped answering {method}: {e}"),
            }
        }
    }

    /// Opens `url` in a new tab and waits until it has loaded.
    pub fn open(&mut self, url: &str) -> Tab {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        let tab = Tab {
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        };
        self.call(Some(&tab), "Page.enable", json!({}));
        self.call(Some(&tab), "Page.navigate", json!({ "url": url }));
        self.wait_loaded(&tab, url);
        tab
    }

    /// Waits until `tab` shows a loaded document whose URL starts like `url`'s path.
    pub fn wait_loaded(&mut self, tab: &Tab, what: &str) {
        wait_for(&format!("{what} to load"), DEADLINE, || {
            let state = self.eval(tab, "document.readyState + ' ' + location.href");
            let state = state.as_str().unwrap_or_default().to_owned();
            (state.starts_with("complete ") && !state.ends_with("about:blank")).then_some(())
        });
    }

    /// The value of the JavaScript expression `expr` in `tab` (promises awaited).
    pub fn eval(&mut self, tab: &Tab, expr: &str) -> Value {
        let r = self.call(
            Some(tab),
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "`{expr}` threw: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Polls `expr` in `tab` until it is true; panics with `what` after [`DEADLINE`].
    pub fn wait_true(&mut self, tab: &Tab, what: &str, expr: &str) {
        wait_for(what, DEADLINE, || {
            (self.eval(tab, expr) == Value::Bool(true)).then_some(())
        });
    }

    /// Saves a PNG of the whole page of `tab` at `path`.
    pub fn screenshot(&mut self, tab: &Tab, path: &Path) {
        // A tab behind another draws no frames to capture.
        self.call(Some(tab), "Page.bringToFront", json!({}));
        let shot = self.call(
            Some(tab),
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let data = base64_decode(shot["data"].as_str().unwrap());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, data).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (what the DevTools protocol sends binary data as).
fn base64_decode(text: &str) -> Vec<u8> {
    let table: HashMap<u8, u32> =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            .iter()
            .enumerate()
            .map(|(k, c)| (*c, k as u32))
            .collect();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| table.contains_key(c)) {
        acc = (acc << 6) | table[&c];
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Where the tests keep what they show of the dashboard: `target/test-output/<name>`.
pub fn output_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.pop();
    dir.join("test-output").join(name)
}
