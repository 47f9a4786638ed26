//! `goalpost dashboard`: a local web page over the state store. It reads runs through
//! `RunView` and the event log (`Store::events_since`), follows a run as it goes with
//! server-sent events, and changes nothing itself: its buttons run the same commands a
//! user has (`goalpost approve`, `pause`, `resume`).
//!
//! Access: the server listens on loopback unless told otherwise, and every request must
//! carry the random token of the URL it prints (as `?token=`, or the cookie the first
//! such request sets). A POST must also carry the session's form token and come from the
//! page itself (its `Origin`, when sent, is the server's; `Sec-Fetch-Site`, when sent, is
//! `same-origin` or `none`), and a request's `Host` must be the address the server
//! listens on, so a page of another site can neither read nor act through a browser.

mod dag;
mod pages;

use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use goalpost_shared::exit::ExitCode;
use goalpost_shared::plan::Plan;
use goalpost_shared::protocol::AuditReport;
use goalpost_state::{RunView, Store, StoreError};

use crate::run_cmd::{RunError, Workspace};

/// The cookie that carries the token after the first request.
const COOKIE: &str = "goalpost_dashboard";
/// How often a page's event stream looks for new events in the store.
const POLL: Duration = Duration::from_millis(200);
/// The diff an attempt's page shows is cut after this many bytes.
const DIFF_BYTES: usize = 512 * 1024;

/// How `goalpost dashboard` listens.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Listen on an address other than loopback.
    pub allow_remote: bool,
    /// The `goalpost` executable the buttons run.
    pub goalpost: PathBuf,
}

#[derive(Debug)]
struct Dash {
    workdir: PathBuf,
    store: PathBuf,
    layout: crate::layout::Layout,
    token: String,
    csrf: String,
    /// The `Host` values a request may carry; empty when any is allowed.
    hosts: Vec<String>,
    goalpost: PathBuf,
}

type Shared = Arc<Dash>;

/// `count` random bytes from the kernel, in hex.
fn random_hex(count: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; count];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Serves the dashboard of the repository at `dir` until the process is stopped.
pub fn serve(dir: &Path, options: &Options) -> Result<ExitCode, RunError> {
    if !options.listen.ip().is_loopback() && !options.allow_remote {
        return Err(RunError::bad(
            format!("{} is not a loopback address", options.listen),
            "the dashboard listens on 127.0.0.1 unless --allow-remote is given too",
        ));
    }
    let ws = Workspace::open(dir)?;
    let io = |what: &str, e: std::io::Error| {
        RunError::bad(
            format!("{what}: {e}"),
            "see the error above; the dashboard could not start",
        )
    };
    let token = random_hex(16).map_err(|e| io("cannot read /dev/urandom", e))?;
    let csrf = random_hex(16).map_err(|e| io("cannot read /dev/urandom", e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| io("cannot start the server's runtime", e))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| io(&format!("cannot listen on {}", options.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| io("cannot read the listening address", e))?;
        let hosts = if options.allow_remote {
            Vec::new()
        } else {
            vec![addr.to_string(), format!("localhost:{}", addr.port())]
        };
        let dash = Arc::new(Dash {
            workdir: ws.workdir.clone(),
            store: ws.layout.store(),
            layout: ws.layout.clone(),
            token,
            csrf,
            hosts,
            goalpost: options.goalpost.clone(),
        });
        println!("dashboard of {}", ws.workdir.display());
        println!("http://{addr}/?token={}", dash.token);
        // The URL is what a caller waits for: out before the first request.
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        axum::serve(listener, router(dash))
            .await
            .map_err(|e| io("the server stopped", e))
    })?;
    Ok(ExitCode::Complete)
}

fn router(dash: Shared) -> Router {
    Router::new()
        .route("/", get(runs))
        .route("/runs/{run}", get(run_page))
        .route("/runs/{run}/live", get(run_live))
        .route("/runs/{run}/events", get(events))
        .route("/runs/{run}/attempts/{phase}/{n}", get(attempt_page))
        .route("/runs/{run}/audits/{k}", get(audit_page))
        .route("/runs/{run}/{action}", post(act))
        .layer(middleware::from_fn_with_state(dash.clone(), guard))
        .with_state(dash)
}

/// A page's failure: a status and a line saying why.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Failure {
        Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

type Page = Result<Response, Failure>;

fn not_found(what: impl Into<String>) -> Failure {
    Failure(StatusCode::NOT_FOUND, what.into())
}

/// The token of a request: `?token=` or the cookie.
fn request_token(req: &Request) -> (Option<String>, bool) {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token=").map(str::to_owned))
    });
    if from_query.is_some() {
        return (from_query, true);
    }
    let from_cookie = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(COOKIE)
                .and_then(|c| c.strip_prefix('='))
                .map(str::to_owned)
        });
    (from_cookie, false)
}

/// Every request: its `Host` is the server's, it carries the token; a POST comes from
/// the dashboard's own pages.
async fn guard(State(dash): State<Shared>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if !dash.hosts.is_empty() {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !dash.hosts.iter().any(|h| h == host) {
            return (StatusCode::FORBIDDEN, "unknown Host\n").into_response();
        }
    }
    let (token, in_query) = request_token(&req);
    if !token.is_some_and(|t| same_secret(&t, &dash.token)) {
        return (
            StatusCode::UNAUTHORIZED,
            "this dashboard needs the token of the URL `goalpost dashboard` printed\n",
        )
            .into_response();
    }
    if req.method() == axum::http::Method::POST
        && let Err(why) = same_origin(headers)
    {
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    let mut response = next.run(req).await;
    if in_query
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            dash.token
        ))
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Whether a POST's headers say it comes from the dashboard's own pages.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = get(header::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
        && site != "none"
    {
        return Err(format!("refused: a {site} request\n"));
    }
    if let Some(origin) = get(header::ORIGIN) {
        let host = get(header::HOST).unwrap_or_default();
        if origin != format!("http://{host}") {
            return Err(format!("refused: a request from {origin}\n"));
        }
    }
    Ok(())
}

/// Runs `read` on a blocking thread with the store open; `None` when there is no store.
async fn with_store<T, F>(dash: &Shared, read: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(Option<Store>, &Dash) -> Result<T, Failure> + Send + 'static,
{
    let dash = dash.clone();
    tokio::task::spawn_blocking(move || {
        let store = Store::open_existing(&dash.store)?;
        read(store, &dash)
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

fn view_of(store: Option<Store>, run: &str) -> Result<(Store, RunView, Plan), Failure> {
    let store = store.ok_or_else(|| not_found("this repository has no goalpost runs"))?;
    let view =
        RunView::load(&store, Some(run))?.ok_or_else(|| not_found(format!("no run {run}")))?;
    let plan: Plan = serde_json::from_str(&store.run_plan_json(run)?).map_err(StoreError::from)?;
    Ok((store, view, plan))
}

async fn runs(State(dash): State<Shared>) -> Page {
    with_store(&dash, |store, dash| {
        let runs = match store {
            Some(s) => s.runs()?,
            None => Vec::new(),
        };
        Ok(Html(pages::runs(
            &dash.workdir.display().to_string(),
            &runs,
            &dash.token,
        ))
        .into_response())
    })
    .await
}

/// A run's page or its live part.
fn render_run(store: Option<Store>, dash: &Dash, run: &str, whole: bool) -> Page {
    let (store, view, plan) = view_of(store, run)?;
    let seq = store.events_since(run, 0)?.last().map_or(0, |e| e.seq);
    let report = std::fs::read_to_string(dash.layout.stop_report(run)).ok();
    let page = pages::RunPage {
        view: &view,
        plan: &plan,
        stop_report: report.as_deref(),
        token: &dash.token,
        csrf: &dash.csrf,
        seq,
    };
    let html = if whole {
        pages::run(&page)
    } else {
        pages::run_live(&page)
    };
    Ok(Html(html).into_response())
}

async fn run_page(State(dash): State<Shared>, UrlPath(run): UrlPath<String>) -> Page {
    with_store(&dash, move |store, dash| {
        render_run(store, dash, &run, true)
    })
    .await
}

async fn run_live(State(dash): State<Shared>, UrlPath(run): UrlPath<String>) -> Page {
    with_store(&dash, move |store, dash| {
        render_run(store, dash, &run, false)
    })
    .await
}

#[derive(Debug, Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

/// The run's event log from `since` on, as server-sent events (the event's JSON as data,
/// its sequence number as id), read from the store as it grows.
async fn events(
    State(dash): State<Shared>,
    UrlPath(run): UrlPath<String>,
    Query(Since { since }): Query<Since>,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    let store_path = dash.store.clone();
    std::thread::spawn(move || {
        let Ok(Some(store)) = Store::open_existing(&store_path) else {
            return;
        };
        let mut seq = since;
        while !tx.is_closed() {
            for record in store.events_since(&run, seq).unwrap_or_default() {
                seq = record.seq;
                let data = serde_json::to_string(&record).unwrap_or_default();
                let event = SseEvent::default().id(seq.to_string()).data(data);
                if tx.blocking_send(event).is_err() {
                    return;
                }
            }
            std::thread::sleep(POLL);
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The base and the tip of an attempt's work, for its diff.
fn attempt_diff(dash: &Dash, base: Option<&str>, tip: Option<&str>) -> Result<String, Failure> {
    let (Some(base), Some(tip)) = (base, tip) else {
        return Ok(String::from("(no commit yet)"));
    };
    let ws = Workspace::open(&dash.workdir)?;
    let base = ws.repo.resolve(base).map_err(RunError::from)?;
    let tip = ws.repo.resolve(tip).map_err(RunError::from)?;
    Ok(ws
        .repo
        .diff_text(base, tip, DIFF_BYTES)
        .map_err(RunError::from)?)
}

fn read_report(dir: &str) -> Option<AuditReport> {
    let text = std::fs::read_to_string(Path::new(dir).join("audit.json")).ok()?;
    serde_json::from_str(&text).ok()
}

async fn attempt_page(
    State(dash): State<Shared>,
    UrlPath((run, phase, n)): UrlPath<(String, String, u32)>,
) -> Page {
    with_store(&dash, move |store, dash| {
        let (_, view, _) = view_of(store, &run)?;
        let a = view
            .attempts
            .iter()
            .find(|a| a.phase_id == phase && a.n == n)
            .ok_or_else(|| not_found(format!("no attempt {phase} #{n} in run {run}")))?;
        let phase_base = view
            .phases
            .iter()
            .find(|p| p.phase_id == phase)
            .and_then(|p| p.base.clone());
        let base = a.base.clone().or(phase_base);
        let tip = a.candidate.clone().or_else(|| a.head.clone());
        let diff = attempt_diff(dash, base.as_deref(), tip.as_deref())?;
        let audits: Vec<_> = view
            .audits
            .iter()
            .enumerate()
            .filter(|(_, x)| x.phase_id == phase && x.attempt == Some(n))
            .map(|(k, x)| (k, x, read_report(&x.report_dir)))
            .collect();
        let title = format!("{phase} #{n} ({}, {})", a.agent, a.state);
        Ok(Html(pages::attempt(&run, &title, &diff, &audits, &dash.token)).into_response())
    })
    .await
}

async fn audit_page(
    State(dash): State<Shared>,
    UrlPath((run, k)): UrlPath<(String, usize)>,
) -> Page {
    with_store(&dash, move |store, dash| {
        let (_, view, _) = view_of(store, &run)?;
        let row = view
            .audits
            .get(k)
            .ok_or_else(|| not_found(format!("no audit #{k} in run {run}")))?;
        let body = format!(
            "<p><a href=\"/runs/{r}?token={t}\">back to run {r}</a></p>{}",
            pages::evidence(row, read_report(&row.report_dir).as_ref()),
            r = pages::esc(&run),
            t = dash.token,
        );
        Ok(Html(pages::page(
            &format!("audit #{k} of {}", row.phase_id),
            &dash.token,
            &body,
            "",
        ))
        .into_response())
    })
    .await
}

#[derive(Debug, Deserialize)]
struct ActForm {
    #[serde(default)]
    csrf: String,
}

/// A button: `approve` and `pause` run `goalpost approve` / `goalpost pause` and show
/// what they said; `resume` starts `goalpost resume` as a process of its own, which goes
/// on after the dashboard stops, its output in the run's `resume.log`.
async fn act(
    State(dash): State<Shared>,
    UrlPath((run, action)): UrlPath<(String, String)>,
    Form(form): Form<ActForm>,
) -> Page {
    if !same_secret(&form.csrf, &dash.csrf) {
        return Err(Failure(
            StatusCode::FORBIDDEN,
            "refused: the form's token is not this dashboard's\n".into(),
        ));
    }
    let args: Vec<String> = match action.as_str() {
        "approve" => vec!["approve".into(), "--run".into(), run.clone()],
        "pause" => vec!["pause".into()],
        "resume" => vec!["resume".into(), "--run".into(), run.clone()],
        other => return Err(not_found(format!("no action {other}"))),
    };
    let dash2 = dash.clone();
    let run2 = run.clone();
    let (ok, said) = tokio::task::spawn_blocking(move || -> Result<(bool, String), Failure> {
        let mut cmd = Command::new(&dash2.goalpost);
        cmd.arg("-C")
            .arg(&dash2.workdir)
            .args(&args)
            .stdin(Stdio::null());
        let fail = |e: std::io::Error| {
            Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start {}: {e}", dash2.goalpost.display()),
            )
        };
        if args[0] == "resume" {
            let log_path = dash2.layout.run_dir(&run2).join("resume.log");
            let log = std::fs::File::create(&log_path).map_err(fail)?;
            let err = log.try_clone().map_err(fail)?;
            use std::os::unix::process::CommandExt as _;
            // A process group of its own: the run goes on when the dashboard is stopped.
            let mut child = cmd
                .stdout(log)
                .stderr(err)
                .process_group(0)
                .spawn()
                .map_err(fail)?;
            let pid = child.id();
            std::thread::spawn(move || child.wait());
            return Ok((
                true,
                format!(
                    "started `goalpost resume --run {run2}` (pid {pid}); its output goes to {}\n",
                    log_path.display()
                ),
            ));
        }
        let out = cmd.output().map_err(fail)?;
        let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
        said.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), said))
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let body = format!(
        "<p><a href=\"/runs/{r}?token={t}\" id=\"back\">back to run {r}</a></p>\
         <h2>goalpost {action}</h2><pre id=\"said\" class=\"{}\">{}</pre>",
        if ok { "pass" } else { "fail" },
        pages::esc(&said),
        r = pages::esc(&run),
        t = dash.token,
        action = pages::esc(&action),
    );
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((status, Html(pages::page(&action, &dash.token, &body, ""))).into_response())
}
