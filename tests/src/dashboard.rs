//! `goalpost dashboard` started beside a test's run, and plain HTTP/1.1 requests to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use crate::TestEnv;
use crate::durable::{DEADLINE, Running, wait_for};

/// A running dashboard and the URL it printed.
#[derive(Debug)]
pub struct Dashboard {
    pub process: Running,
    /// `http://127.0.0.1:PORT/?token=...`, as printed.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub token: String,
}

/// An HTTP response: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Dashboard {
    /// Starts `goalpost -C repo dashboard` and waits for the URL it prints.
    pub fn start(env: &TestEnv, repo: &str) -> Dashboard {
        Dashboard::start_with(env, repo, &[])
    }

    /// Starts `goalpost -C repo dashboard args...` and waits for the URL it prints.
    pub fn start_with(env: &TestEnv, repo: &str, args: &[&str]) -> Dashboard {
        let mut argv = vec!["-C", repo, "dashboard"];
        argv.extend_from_slice(args);
        let mut process = env.spawn_goalpost(argv, &[]);
        let url = wait_for("the dashboard's URL", DEADLINE, || {
            if let Some(run) = process.finished() {
                panic!("the dashboard exited\n{run}");
            }
            process
                .stdout_so_far()
                .lines()
                .find(|l| l.starts_with("http://") && l.contains("?token="))
                .map(str::to_owned)
        });
        let rest = url.strip_prefix("http://").unwrap();
        let (addr, token) = rest.split_once("/?token=").unwrap();
        Dashboard {
            addr: addr.to_owned(),
            token: token.to_owned(),
            url: url.clone(),
            process,
        }
    }

    /// `path` with the token added.
    pub fn with_token(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}token={}", self.token)
    }

    /// The full URL of `path`, with the token.
    pub fn link(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, self.with_token(path))
    }

    /// Sends one request (`Host` is the dashboard's unless `headers` set it) and reads the
    /// whole response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if method == "POST" {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {raw}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Response {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// GET `path` with the token.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", &self.with_token(path), &[], "")
    }
}

/// The form token of a dashboard page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a form")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}
