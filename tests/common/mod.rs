//! Test harness: a real nats-server with JetStream, the real binary in local mode, and real
//! HTTP receivers. Everything runs on loopback, on random ports, in temp dirs, and is torn
//! down on drop.
#![allow(dead_code)]

pub mod security;

use std::{
    collections::{HashMap, VecDeque},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::Value;
use tempfile::TempDir;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const SECRET_2: &str = "whsec_dGhpcyBpcyBhIHNlY29uZCB0ZXN0IGtleSE=";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// NATS_SERVER_BIN, else `.tools/bin/nats-server` (`make tools`), else the one on PATH.
pub fn nats_server_bin() -> PathBuf {
    if let Ok(path) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/nats-server");
    if local.exists() {
        return local;
    }
    PathBuf::from("nats-server")
}

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A nats-server with JetStream, its store in a temp dir.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: TempDir,
    /// `user:password@` in URLs, when the server requires it.
    credentials: Option<(String, String)>,
}

impl Nats {
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// A server that requires `user` and `password`; [`Nats::url`] carries them.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::launch(Some((user.to_owned(), password.to_owned())))
    }

    fn launch(credentials: Option<(String, String)>) -> Self {
        let store = tempfile::tempdir().expect("tempdir");
        let mut nats = Self {
            child: None,
            port: 0,
            store,
            credentials,
        };
        nats.spawn(free_port());
        nats
    }

    fn spawn(&mut self, port: u16) {
        let log = std::fs::File::create(self.store.path().join("nats.log")).expect("log file");
        let auth: Vec<String> = match &self.credentials {
            Some((user, password)) => vec![
                "--user".into(),
                user.clone(),
                "--pass".into(),
                password.clone(),
            ],
            None => Vec::new(),
        };
        let child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(self.store.path().join("js"))
            .args(auth)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting nats-server ({}): {e}; run `make tools`",
                    nats_server_bin().display()
                )
            });
        self.child = Some(child);
        self.port = port;
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "nats-server did not start on port {port}"
        );
    }

    pub fn url(&self) -> String {
        match &self.credentials {
            Some((user, password)) => format!("nats://{user}:{password}@127.0.0.1:{}", self.port),
            None => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    pub async fn client(&self) -> async_nats::Client {
        let mut options = async_nats::ConnectOptions::new();
        if let Some((user, password)) = &self.credentials {
            options = options.user_and_password(user.clone(), password.clone());
        }
        options
            .connect(format!("nats://127.0.0.1:{}", self.port))
            .await
            .expect("connect to nats")
    }

    /// Publishes an event straight to NATS, as a service would.
    pub async fn publish(&self, subject: &str, id: Option<&str>, payload: &[u8]) {
        let client = self.client().await;
        let js = async_nats::jetstream::new(client);
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = id {
            headers.insert("Nats-Msg-Id", id);
        }
        js.publish_with_headers(subject.to_owned(), headers, payload.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }
}

impl Nats {
    /// Publishes an event with the given headers (CloudEvents, Content-Type, anything).
    pub async fn publish_with(&self, subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
        let js = async_nats::jetstream::new(self.client().await);
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        js.publish_with_headers(subject.to_owned(), map, payload.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `webhook-operator local` as a child process.
pub struct Pipeline {
    child: Option<Child>,
    pub admin_port: u16,
    pub manifests: TempDir,
    nats_url: String,
    log: PathBuf,
    extra_args: Vec<String>,
    allow_private_networks: bool,
    rust_log: String,
}

impl Pipeline {
    /// Starts with the given manifest files (name, contents) and waits until it is ready.
    pub async fn start(nats: &Nats, files: &[(&str, String)]) -> Self {
        Self::start_with(nats, files, &[]).await
    }

    pub async fn start_with(nats: &Nats, files: &[(&str, String)], extra_args: &[&str]) -> Self {
        Self::launch(nats, files, extra_args, true).await
    }

    /// Starts without `--allow-private-networks`: the outbound address guard refuses loopback
    /// receivers unless `extra_args` allow them (`--allow-cidr`).
    pub async fn start_guarded(nats: &Nats, files: &[(&str, String)], extra_args: &[&str]) -> Self {
        Self::launch(nats, files, extra_args, false).await
    }

    /// Like [`Pipeline::start_guarded`], logging at `rust_log` (e.g. `debug`).
    pub async fn start_logged(
        nats: &Nats,
        files: &[(&str, String)],
        extra_args: &[&str],
        rust_log: &str,
    ) -> Self {
        Self::launch_with(nats, files, extra_args, false, rust_log).await
    }

    async fn launch(
        nats: &Nats,
        files: &[(&str, String)],
        extra_args: &[&str],
        allow_private_networks: bool,
    ) -> Self {
        Self::launch_with(
            nats,
            files,
            extra_args,
            allow_private_networks,
            "info,async_nats=warn",
        )
        .await
    }

    async fn launch_with(
        nats: &Nats,
        files: &[(&str, String)],
        extra_args: &[&str],
        allow_private_networks: bool,
        rust_log: &str,
    ) -> Self {
        let manifests = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(manifests.path().join(name), text).expect("write manifest");
        }
        let log = manifests.path().join("pipeline.log.txt");
        let mut pipeline = Self {
            child: None,
            admin_port: 0,
            manifests,
            nats_url: nats.url(),
            log,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            allow_private_networks,
            rust_log: rust_log.to_owned(),
        };
        pipeline.spawn().await;
        pipeline
    }

    async fn spawn(&mut self) {
        self.admin_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
            .arg("local")
            .arg("--manifests")
            .arg(self.manifests.path())
            .args([
                "--nats-url",
                &self.nats_url,
                "--listen",
                &format!("127.0.0.1:{}", self.admin_port),
            ])
            .args(
                self.allow_private_networks
                    .then_some("--allow-private-networks"),
            )
            .args(&self.extra_args)
            .env("RUST_LOG", &self.rust_log)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start webhook-operator");
        self.child = Some(child);
        let url = format!("{}/readyz", self.admin());
        let ready = wait_until(Duration::from_secs(30), || async {
            reqwest::get(&url)
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        })
        .await;
        assert!(ready, "pipeline not ready; log:\n{}", self.log_text());
    }

    pub fn admin(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no graceful shutdown, nothing flushed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn write_manifest(&self, name: &str, text: &str) {
        std::fs::write(self.manifests.path().join(name), text).expect("write manifest");
    }

    pub async fn ingest(
        &self,
        namespace: &str,
        event_type: &str,
        body: &str,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!(
                "{}/v1/events/{namespace}/{event_type}",
                self.admin()
            ))
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        status_and_json(request.send().await.expect("ingest request")).await
    }

    /// GETs `path` of the admin API: the status, and the body as JSON (`null` if it is not).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::get(format!("{}{path}", self.admin()))
            .await
            .expect("GET");
        status_and_json(response).await
    }

    /// POSTs `body` (or nothing) to `path` of the admin API: the status, and the body as JSON.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = reqwest::Client::new().post(format!("{}{path}", self.admin()));
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        status_and_json(request.send().await.expect("POST")).await
    }

    pub async fn endpoints(&self) -> Vec<Value> {
        let body = reqwest::get(format!("{}/v1/endpoints", self.admin()))
            .await
            .expect("endpoints")
            .bytes()
            .await;
        serde_json::from_slice(&body.expect("body")).expect("json")
    }

    pub async fn endpoint(&self, namespace: &str, name: &str) -> Value {
        self.endpoints()
            .await
            .into_iter()
            .find(|e| e["namespace"] == namespace && e["name"] == name)
            .unwrap_or_else(|| panic!("endpoint {namespace}/{name} not listed"))
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Waits until the sample of `series` in `/metrics` is `value`.
    pub async fn wait_for_metric(&self, series: &str, value: f64) {
        let reached = wait_until(Duration::from_secs(30), || async {
            metric_value(&self.metrics().await, series) == Some(value)
        })
        .await;
        assert!(
            reached,
            "{series} never became {value}:\n{}",
            self.metrics().await
        );
    }

    /// Waits until `field` of an endpoint in `/v1/endpoints` reaches `value`.
    pub async fn wait_for_counter(
        &self,
        namespace: &str,
        name: &str,
        field: &str,
        value: u64,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = self.endpoint(namespace, name).await;
            if last[field].as_u64() == Some(value) {
                return last;
            }
            assert!(
                Instant::now() < deadline,
                "{namespace}/{name} {field} never reached {value}: {last}\nlog:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- pipeline log ---\n{}", self.log_text());
        }
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the receiver does with one request on a path.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// Answer with a status and a `Retry-After` header (seconds).
    RetryAfter(u16, u64),
    Redirect(&'static str),
    /// Hold the request this long before answering 200.
    Delay(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The status the receiver answered with.
    pub status: u16,
}

impl Received {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    scripts: HashMap<String, VecDeque<Reply>>,
    defaults: HashMap<String, Reply>,
    in_flight: HashMap<String, usize>,
    max_in_flight: HashMap<String, usize>,
    /// Per (path, webhook-id): failures (503) still to answer; `u32::MAX` until released.
    failing: HashMap<(String, String), u32>,
}

/// An HTTP server that records every request and answers per path from a script.
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        Self::serve(listener, port)
    }

    /// Answers on `listener` (plain or TLS), which listens on `port`.
    fn serve<L>(listener: L, port: u16) -> Self
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Replies for the next requests on `path`, in order; then the default.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .lock()
            .unwrap()
            .scripts
            .entry(path.into())
            .or_default()
            .extend(replies);
    }

    /// Reply for every request on `path` once its script is used up (initially 200).
    pub fn set_default(&self, path: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .defaults
            .insert(path.into(), reply);
    }

    /// Answers 503 to the first `times` deliveries of event `id` on `path` (before any script).
    pub fn fail_first(&self, path: &str, id: &str, times: u32) {
        self.state
            .lock()
            .unwrap()
            .failing
            .insert((path.into(), id.into()), times);
    }

    /// Answers 503 to every delivery of event `id` on `path` until [`Receiver::release`].
    pub fn hold(&self, path: &str, id: &str) {
        self.fail_first(path, id, u32::MAX);
    }

    pub fn release(&self, path: &str, id: &str) {
        self.state
            .lock()
            .unwrap()
            .failing
            .remove(&(path.to_owned(), id.to_owned()));
    }

    /// Webhook ids of the deliveries on `path` answered 2xx, each at its first success: the
    /// order in which the receiver saw each event for the first time successfully.
    pub fn first_successes(&self, path: &str) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.received(path)
            .iter()
            .filter(|r| r.succeeded())
            .map(|r| header(r, "webhook-id").to_owned())
            .filter(|id| seen.insert(id.clone()))
            .collect()
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn max_in_flight(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .max_in_flight
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub async fn wait_for(&self, path: &str, count: usize) -> Vec<Received> {
        let ok = wait_until(Duration::from_secs(30), || async {
            self.received(path).len() >= count
        })
        .await;
        let got = self.received(path);
        assert!(ok, "{path}: expected {count} deliveries, got {}", got.len());
        got
    }
}

async fn handle(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let reply = {
        let mut s = state.lock().unwrap();
        let now = {
            let n = s.in_flight.entry(path.clone()).or_default();
            *n += 1;
            *n
        };
        let max = s.max_in_flight.entry(path.clone()).or_default();
        *max = (*max).max(now);
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let failure = match s.failing.get_mut(&(path.clone(), id)) {
            Some(left) if *left > 0 => {
                *left = left.saturating_sub(u32::from(*left != u32::MAX));
                Some(Reply::Status(503))
            }
            _ => None,
        };
        let reply = failure
            .or_else(|| s.scripts.get_mut(&path).and_then(VecDeque::pop_front))
            .or_else(|| s.defaults.get(&path).cloned())
            .unwrap_or(Reply::Status(200));
        let status = match &reply {
            Reply::Status(code) | Reply::RetryAfter(code, _) => *code,
            Reply::Redirect(_) => 302,
            Reply::Delay(_) => 200,
        };
        s.received.push(Received {
            path: path.clone(),
            headers,
            body,
            at: Instant::now(),
            status,
        });
        reply
    };
    let response = match reply {
        Reply::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            format!("status {code}"),
        )
            .into_response(),
        Reply::RetryAfter(code, secs) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response(),
        Reply::Redirect(location) => (StatusCode::FOUND, [("location", location)]).into_response(),
        Reply::Delay(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK.into_response()
        }
    };
    *state.lock().unwrap().in_flight.entry(path).or_default() -= 1;
    response
}

/// Verifies a delivery with the independent `standardwebhooks` implementation.
pub fn verify(secret: &str, delivery: &Received) -> Result<(), String> {
    let webhook = standardwebhooks::Webhook::new(secret).map_err(|e| e.to_string())?;
    webhook
        .verify(&delivery.body, &delivery.headers)
        .map_err(|e| e.to_string())
}

pub fn header<'a>(delivery: &'a Received, name: &str) -> &'a str {
    delivery
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The `webhook-id` of each delivery, in order.
pub fn webhook_ids(deliveries: &[Received]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| header(d, "webhook-id").to_owned())
        .collect()
}

/// Manifest builders: an endpoint, its Secret, and a subscription.
pub fn endpoint(namespace: &str, name: &str, url: &str, extra_spec: &str) -> String {
    format!(
        r#"---
apiVersion: webhook-operator.io/v1alpha1
kind: WebhookEndpoint
metadata: {{ name: {name}, namespace: {namespace} }}
spec:
  url: {url}
  secretRef: {{ name: {name}-signing }}
{extra_spec}
---
apiVersion: v1
kind: Secret
metadata: {{ name: {name}-signing, namespace: {namespace} }}
stringData:
  secret: "{SECRET}"
"#
    )
}

pub fn subscription(namespace: &str, name: &str, endpoint: &str, types: &[&str]) -> String {
    let types: Vec<String> = types.iter().map(|t| format!("{t:?}")).collect();
    format!(
        r#"---
apiVersion: webhook-operator.io/v1alpha1
kind: EventSubscription
metadata: {{ name: {name}, namespace: {namespace} }}
spec:
  endpointRef: {{ name: {endpoint} }}
  eventTypes: [{}]
"#,
        types.join(", ")
    )
}

/// An endpoint of `acme` with fast retries and `extra_spec`, subscribed to every event type.
pub fn subscribed_endpoint(name: &str, url: &str, extra_spec: &str) -> String {
    endpoint("acme", name, url, &format!("{FAST_RETRY}\n{extra_spec}"))
        + &subscription("acme", name, name, &[">"])
}

/// The value of one Prometheus sample, e.g. `webhook_events_filtered_total{tenant="acme",subscription="big"}`.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Fast retries for tests.
pub const FAST_RETRY: &str =
    "  retry: { maxAttempts: 3, initialBackoff: 200ms, maxBackoff: 1s, maxAge: 1h }\n  timeout: 2s";

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
