//! One scenario's processes and measurement: a fresh nats-server and one or more
//! `webhook-operator local` processes (sharing the durable consumers) in a temporary directory,
//! warmed up with one event per endpoint; then the scenario's window, metered (CPU of every
//! party, nats-server's message counts); and the logs, collected whatever happened.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use super::{
    numbers::median,
    pacing::Pacing,
    procs::{self, CpuMeter, CpuShare, LogSummary, Nats, Pipeline},
    publisher::Publisher,
    receiver::{Receiver, WARMUP_SEQ},
    world::{ENDPOINTS, manifest_yaml},
};

/// Publishes awaiting their JetStream ack, at most.
pub const PUBLISH_IN_FLIGHT: u32 = 1024;
const TMPFS: &str = "/dev/shm";

/// What every scenario reports besides its own numbers.
#[derive(Default)]
pub struct RunInfo {
    pub cpu: CpuShare,
    /// Messages nats-server received from / sent to clients during the window.
    pub nats_messages: Option<(u64, u64)>,
    pub window_seconds: f64,
    /// Deliveries the receiver counted during the window.
    pub window_deliveries: u64,
    pub log: LogSummary,
    pub log_copy: Option<String>,
    pub signatures_checked: u64,
    pub signatures_bad: u64,
    pub receiver_problem: Option<String>,
    pub publish_failed: u64,
    pub publish_error: Option<String>,
}

/// How a scenario's pipeline is set up.
pub struct Setup<'a> {
    pub name: &'a str,
    pub receiver: &'a Receiver,
    /// Add the endpoint that never answers.
    pub hang: bool,
    /// JetStream store on tmpfs instead of `TMPDIR`.
    pub tmpfs: bool,
    /// `webhook-operator local` processes sharing the work.
    pub processes: usize,
}

/// Process ids of a scenario's servers.
pub struct Pids {
    pub nats: u32,
    pub pipelines: Vec<u32>,
}

/// What a scenario's measurement gets: a connected publisher, meters started just now, and
/// the pipeline processes.
pub struct Run {
    pub publisher: Publisher,
    pub meters: Meters,
    /// Admin addresses of the pipeline processes, in start order.
    pub admins: Vec<SocketAddr>,
    pub pids: Pids,
}

/// Measures a window: CPU of the processes and the machine, nats-server message counts.
pub struct Meters {
    cpu: CpuMeter,
    http: reqwest::Client,
    nats_monitor: SocketAddr,
    nats_start: Option<(u64, u64)>,
}

/// What the machine and nats-server did during a measured window.
pub struct Window {
    pub cpu: CpuShare,
    nats_messages: Option<(u64, u64)>,
    seconds: f64,
}

impl Meters {
    /// Ends the measured window: CPU shares and nats-server message counts since it began.
    pub async fn stop(&self) -> Window {
        let cpu = self.cpu.stop();
        let seconds = self.cpu.elapsed();
        let end = procs::nats_messages(&self.http, self.nats_monitor).await;
        let nats_messages = match (self.nats_start, end) {
            (Some((in0, out0)), Some((in1, out1))) => Some((in1 - in0, out1 - out0)),
            _ => None,
        };
        Window {
            cpu,
            nats_messages,
            seconds,
        }
    }
}

impl Window {
    /// The window's measurements and the publish outcome; `deliveries` made in the window.
    pub fn info(self, deliveries: u64, publisher: &Publisher) -> RunInfo {
        RunInfo {
            cpu: self.cpu,
            nats_messages: self.nats_messages,
            window_seconds: self.seconds,
            window_deliveries: deliveries,
            publish_failed: publisher.failed(),
            publish_error: publisher.first_error(),
            ..RunInfo::default()
        }
    }
}

/// Starts scenarios; `logs` names the folder under the target directory that keeps their logs.
pub struct Harness {
    pub nats_bin: PathBuf,
    pub http: reqwest::Client,
    pub logs: &'static str,
}

/// One scenario's processes. Field order is drop order: pipelines, then nats, then the files.
struct Env {
    pipelines: Vec<Pipeline>,
    nats: Nats,
    dir: TempDir,
}

impl Harness {
    pub fn new(logs: &'static str) -> anyhow::Result<Self> {
        // reqwest is built without a default TLS provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            nats_bin: procs::nats_server_bin()?,
            http: reqwest::Client::builder().build()?,
            logs,
        })
    }

    /// Starts nats-server and the pipeline processes for `setup`, warms them up, runs `body`,
    /// and always collects the pipelines' logs (also when starting or `body` failed).
    pub async fn with_pipeline<T, F, Fut>(
        &self,
        setup: Setup<'_>,
        body: F,
    ) -> anyhow::Result<(T, RunInfo)>
    where
        F: FnOnce(Run) -> Fut,
        Fut: Future<Output = anyhow::Result<(T, RunInfo)>>,
    {
        let name = setup.name;
        check_tmpfs(setup.tmpfs)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("pipeline-bench-");
        let dir = match setup.tmpfs {
            true => builder.tempdir_in(TMPFS)?,
            false => builder.tempdir()?,
        };
        let logs: Vec<PathBuf> = (0..setup.processes)
            .map(|i| procs::pipeline_log(dir.path(), i))
            .collect();
        let outcome = match self.start(dir.path(), &setup).await {
            Ok((nats, pipelines)) => {
                let env = Env {
                    pipelines,
                    nats,
                    dir,
                };
                let outcome = self.warm_and_run(name, &env, setup.receiver, body).await;
                // Kill the processes before reading their logs; keep `dir` until then.
                let Env {
                    pipelines,
                    nats,
                    dir,
                } = env;
                drop(pipelines);
                drop(nats);
                (outcome, dir)
            }
            Err(error) => (Err(error), dir),
        };
        let (outcome, dir) = outcome;
        let log = LogSummary::read(&logs);
        let copy = procs::keep_logs(self.logs, name, dir.path());
        eprintln!(
            "[{name}] pipeline log: {} (copy: {})",
            log.describe(),
            copy.as_ref()
                .map_or("none".into(), |p| p.display().to_string())
        );
        for line in &log.samples {
            eprintln!("[{name}]   {line}");
        }
        let (value, mut info) = match outcome {
            Ok(ok) => ok,
            Err(error) => {
                let hint = copy
                    .map(|p| format!(" (pipeline log: {}; {})", p.display(), log.describe()))
                    .unwrap_or_default();
                return Err(error.context(format!("{name}{hint}")));
            }
        };
        info.log = log;
        info.log_copy = copy.map(|p| p.display().to_string());
        let (checked, bad) = setup.receiver.signatures();
        info.signatures_checked = checked;
        info.signatures_bad = bad;
        info.receiver_problem = setup.receiver.first_problem();
        Ok((value, info))
    }

    async fn start(&self, dir: &Path, setup: &Setup<'_>) -> anyhow::Result<(Nats, Vec<Pipeline>)> {
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&manifests)?;
        std::fs::write(
            manifests.join("bench.yaml"),
            manifest_yaml(setup.receiver.addr, setup.hang),
        )?;
        let nats = procs::start_nats(&self.nats_bin, dir).await?;
        let mut pipelines = Vec::with_capacity(setup.processes);
        for i in 0..setup.processes {
            pipelines.push(procs::start_pipeline(dir, i, &manifests, &nats.url, &self.http).await?);
        }
        Ok((nats, pipelines))
    }

    async fn warm_and_run<T, F, Fut>(
        &self,
        name: &str,
        env: &Env,
        receiver: &Receiver,
        body: F,
    ) -> anyhow::Result<(T, RunInfo)>
    where
        F: FnOnce(Run) -> Fut,
        Fut: Future<Output = anyhow::Result<(T, RunInfo)>>,
    {
        let _ = &env.dir;
        let mut publisher = Publisher::connect(&env.nats.url, PUBLISH_IN_FLIGHT).await?;
        // One event per endpoint: consumers exist, connections are open, signatures check out.
        let warm = Instant::now();
        for i in 0..ENDPOINTS as u64 {
            publisher.publish(WARMUP_SEQ + i).await;
        }
        wait_until(Duration::from_secs(60), || {
            receiver.warmup() >= ENDPOINTS as u64
        })
        .await
        .with_context(|| {
            format!(
                "warm-up: only {} of {ENDPOINTS} events delivered within 60 s",
                receiver.warmup()
            )
        })?;
        eprintln!(
            "[{name}] pipeline up; warm-up delivered to all {ENDPOINTS} endpoints in {:.1} s",
            warm.elapsed().as_secs_f64()
        );
        if !publisher.settle(Duration::from_secs(10)).await || publisher.failed() > 0 {
            bail!(
                "warm-up publishes failed: {}",
                publisher
                    .first_error()
                    .unwrap_or_else(|| "no ack within 10 s".into())
            );
        }
        publisher.reset();
        let (checked, bad) = receiver.signatures();
        if bad > 0 {
            bail!(
                "{bad} of {checked} signatures did not verify: {}",
                receiver.first_problem().unwrap_or_default()
            );
        }
        let nats_start = procs::nats_messages(&self.http, env.nats.monitor).await;
        let pids = Pids {
            nats: env.nats.proc.pid(),
            pipelines: env.pipelines.iter().map(|p| p.proc.pid()).collect(),
        };
        let cpu = CpuMeter::start(pids.nats, &pids.pipelines);
        body(Run {
            publisher,
            meters: Meters {
                cpu,
                http: self.http.clone(),
                nats_monitor: env.nats.monitor,
                nats_start,
            },
            admins: env.pipelines.iter().map(|p| p.admin).collect(),
            pids,
        })
        .await
    }
}

/// A bench's `main`: runs `bench` on a multi-threaded runtime until it ends or Ctrl-C (the
/// scenario's processes die with it). `Ok(false)` means a scenario failed, already reported.
pub fn main(bench: impl Future<Output = anyhow::Result<bool>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            result = bench => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Child processes were killed when the scenario futures were dropped.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: at least one scenario failed (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A whole number above 0 from the environment variable `name`; `default` when it is unset or
/// empty.
pub fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{name}={v}: expected a whole number above 0"),
        },
        _ => Ok(default),
    }
}

/// `make <target>` with those of `variables` that are set: the command that reproduces a run.
pub fn command(target: &str, variables: &[&str]) -> String {
    let mut command = format!("make {target}");
    for name in variables {
        if let Ok(value) = std::env::var(name)
            && !value.trim().is_empty()
        {
            command.push_str(&format!(" {name}={}", value.trim()));
        }
    }
    command
}

/// Scenarios on tmpfs need one; without it they are skipped.
fn check_tmpfs(tmpfs: bool) -> anyhow::Result<()> {
    if tmpfs && !Path::new(TMPFS).is_dir() {
        bail!("skipped: {TMPFS} is not available");
    }
    Ok(())
}

/// Polls `done` every 20 ms for at most `timeout`.
pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits (bounded) until the receiver has every event the publisher got acknowledged; the
/// seconds that took from `since`, or `None` when it timed out.
pub async fn drain(
    publisher: &Publisher,
    receiver: &Receiver,
    timeout: Duration,
    since: Instant,
) -> Option<f64> {
    publisher.settle(Duration::from_secs(15)).await;
    wait_until(timeout, || receiver.unique() >= publisher.acked())
        .await
        .ok()
        .map(|()| since.elapsed().as_secs_f64())
}

/// Events published but not yet delivered, at most, while saturating.
pub const MAX_BACKLOG: u64 = 20_000;

/// A closed-loop throughput window: what the receiver counted each second.
pub struct Saturated {
    pub per_second: Vec<u64>,
    /// The per-second counts after the warm-up seconds, sorted.
    pub steady: Vec<u64>,
    pub drain_seconds: Option<f64>,
    pub info: RunInfo,
}

/// Publishes for `seconds` as fast as the pipeline absorbs (at most [`MAX_BACKLOG`] events
/// not yet delivered), then waits for the backlog to drain. The first `warmup` seconds are
/// left out of [`Saturated::steady`].
pub async fn saturate(
    name: &str,
    run: &mut Run,
    receiver: &Receiver,
    seconds: usize,
    warmup: usize,
) -> Saturated {
    let publisher = &mut run.publisher;
    receiver.start_window(false);
    let mut next_report = 10;
    publisher
        .saturate(
            Duration::from_secs(seconds as u64),
            MAX_BACKLOG,
            || receiver.total(),
            |elapsed, sent| {
                if elapsed >= next_report {
                    let last = receiver.per_second(next_report as usize);
                    eprintln!(
                        "[{name}] {next_report:>3} s: {} delivered, last second {}/s, {sent} published",
                        receiver.total(),
                        last.last().copied().unwrap_or(0),
                    );
                    next_report += 10;
                }
            },
        )
        .await;
    let window = run.meters.stop().await;
    let window_deliveries = receiver.total();
    let per_second = receiver.per_second(seconds);
    let mut steady = per_second[warmup.min(seconds.saturating_sub(1))..].to_vec();
    steady.sort_unstable();
    // The backlog (up to MAX_BACKLOG) drains at about the measured rate: give it three times that.
    let backlog = publisher.sent().saturating_sub(receiver.unique());
    let drain_for = (backlog as f64 * 3.0 / median(&steady).max(1.0)).clamp(30.0, 300.0);
    let drain_seconds = drain(
        publisher,
        receiver,
        Duration::from_secs_f64(drain_for),
        Instant::now(),
    )
    .await;
    Saturated {
        per_second,
        steady,
        drain_seconds,
        info: window.info(window_deliveries, publisher),
    }
}

/// A paced (open-loop) window: how well the publisher kept its schedule, and the latency of
/// every event that arrived.
pub struct Paced {
    pub pacing: Pacing,
    /// (seq, publish -> receipt ns) of first receipts, in order of receipt.
    pub samples: Vec<(u64, u64)>,
    pub drain_seconds: Option<f64>,
    pub info: RunInfo,
}

/// Publishes `rate` events per second for `seconds` on schedule, recording latencies; then
/// waits at most `drain_for` for the rest to arrive. Prints progress every `report_every` s.
pub async fn paced(
    name: &str,
    run: &mut Run,
    receiver: &Receiver,
    (rate, seconds): (u64, u64),
    report_every: u64,
    drain_for: Duration,
) -> Paced {
    receiver.start_window(true);
    let mut next_report = report_every;
    let pacing = run
        .publisher
        .paced(rate, seconds, |elapsed, sent| {
            if elapsed >= next_report {
                eprintln!(
                    "[{name}] {next_report:>3} s: {sent} published, {} delivered",
                    receiver.total()
                );
                next_report += report_every;
            }
        })
        .await;
    let window = run.meters.stop().await;
    let window_deliveries = receiver.total();
    let drain_seconds = drain(&run.publisher, receiver, drain_for, Instant::now()).await;
    receiver.stop_recording();
    Paced {
        pacing,
        samples: receiver.samples(),
        drain_seconds,
        info: window.info(window_deliveries, &run.publisher),
    }
}
