//! End-to-end benchmark of the delivery pipeline on this machine:
//! publisher -> NATS JetStream -> `webhook-operator local` -> HTTP receiver (this process).
//!
//! 1. Throughput: 100 endpoints, events round-robin, as fast as the pipeline absorbs, 60 s.
//! 2. Latency: 1,000 events/s for 30 s; publish -> receipt percentiles.
//! 3. As 2, with one extra endpoint that never answers, subscribed to 10% of the events.
//! 4. Ceiling: the receiver alone under direct HTTP load (wrk if installed, else built in).
//!
//! 1b, 2b and 3b repeat runs 1-3 (1b shorter) with nats-server's store on tmpfs (/dev/shm),
//! to show what the filesystem under JetStream costs; runs 1-3 use the default temporary
//! directory (`TMPDIR`).
//!
//! Every pipeline scenario gets a fresh nats-server and pipeline process in a temporary
//! directory; all child processes are killed when dropped (also on error or Ctrl-C).
//! Writes BENCHMARKS.md at the repository root and prints the same tables.
//!
//! `make bench`, or `NATS_SERVER_BIN=... cargo bench --bench pipeline`.
//! `PIPELINE_BENCH_QUICK=1` shortens every run; `PIPELINE_BENCH_ONLY=ceiling,throughput,latency,
//! hang,throughput-tmpfs,latency-tmpfs,hang-tmpfs` runs a subset. Either way the report then goes to
//! `target/tmp/BENCHMARKS.partial.md` and BENCHMARKS.md is left alone.

#[path = "pipeline/procs.rs"]
mod procs;
#[path = "pipeline/publisher.rs"]
mod publisher;
#[path = "pipeline/receiver.rs"]
mod receiver;
#[path = "pipeline/report.rs"]
mod report;

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use procs::{CpuMeter, LogSummary, Nats, Pipeline};
use publisher::{Publisher, event_type};
use receiver::{Receiver, WARMUP_SEQ};
use report::{Ceiling, Latency, Machine, Results, RunInfo, Throughput};

pub const TENANT: &str = "bench";
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const ENDPOINTS: usize = 100;

/// Publishes awaiting their JetStream ack, at most.
const PUBLISH_IN_FLIGHT: u32 = 1024;
/// Throughput run: events published but not yet delivered, at most.
const MAX_BACKLOG: u64 = 20_000;
const LATENCY_RATE: u64 = 1_000;
/// Share of the event types the hanging endpoint subscribes to (first N of 100 endpoints' types).
const HANG_SUBSCRIBED: usize = 10;
const CEILING_CONNECTIONS: usize = 64;
/// Latency runs: also report p99 of the events sent after this many seconds.
const STEADY_AFTER: u64 = 10;
const SLICE_SECONDS: u64 = 5;

/// Nanoseconds on a monotonic clock shared by publisher and receiver (same process).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

struct Plan {
    quick: bool,
    /// `PIPELINE_BENCH_ONLY=throughput,latency,...`: run only these scenarios.
    only: Option<Vec<String>>,
    throughput_seconds: usize,
    throughput_warmup: usize,
    /// Run 1b (JetStream store on tmpfs): a shorter window.
    tmpfs_throughput_seconds: usize,
    latency_seconds: usize,
    ceiling_seconds: usize,
}

const SKIPPED: &str = "skipped (PIPELINE_BENCH_ONLY)";

impl Plan {
    fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == scenario))
    }

    /// Shortened or incomplete runs do not overwrite BENCHMARKS.md.
    fn partial(&self) -> bool {
        self.quick || self.only.is_some()
    }

    fn from_env() -> Self {
        let quick = std::env::var("PIPELINE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let only = std::env::var("PIPELINE_BENCH_ONLY")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
        if quick {
            Self {
                quick,
                only,
                throughput_seconds: 20,
                throughput_warmup: 5,
                tmpfs_throughput_seconds: 15,
                latency_seconds: 10,
                ceiling_seconds: 5,
            }
        } else {
            Self {
                quick,
                only,
                throughput_seconds: 60,
                throughput_warmup: 10,
                tmpfs_throughput_seconds: 20,
                latency_seconds: 30,
                ceiling_seconds: 10,
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: tokio runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            result = run() => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Child processes were killed when the scenario futures were dropped.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: at least one scenario failed (see above)");
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs every scenario; `Ok(false)` when one failed (the report still gets written).
async fn run() -> anyhow::Result<bool> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let plan = Plan::from_env();
    let nats_bin = procs::nats_server_bin()?;
    let machine = Machine::detect(&nats_bin);
    let http = reqwest::Client::builder().build()?;
    eprintln!(
        "pipeline bench: {} cores, nats-server {} ({}), pipeline {}",
        machine.cores,
        machine.nats_version,
        nats_bin.display(),
        env!("CARGO_BIN_EXE_webhook-operator")
    );

    let bench = Bench {
        nats_bin,
        http,
        plan,
    };
    let plan = &bench.plan;
    let ceiling = match plan.runs("ceiling") {
        true => report_error("ceiling", bench.ceiling().await),
        false => Err(SKIPPED.into()),
    };
    let throughput = match plan.runs("throughput") {
        true => report_error("throughput", bench.throughput(false).await),
        false => Err(SKIPPED.into()),
    };
    let latency = match plan.runs("latency") {
        true => report_error("latency", bench.latency(false, false).await),
        false => Err(SKIPPED.into()),
    };
    let hang = match plan.runs("hang") {
        true => report_error("hanging endpoint", bench.latency(true, false).await),
        false => Err(SKIPPED.into()),
    };
    let throughput_tmpfs = match plan.runs("throughput-tmpfs") {
        true => report_error("throughput-tmpfs", bench.throughput(true).await),
        false => Err(SKIPPED.into()),
    };
    let latency_tmpfs = match plan.runs("latency-tmpfs") {
        true => report_error("latency-tmpfs", bench.latency(false, true).await),
        false => Err(SKIPPED.into()),
    };
    let hang_tmpfs = match plan.runs("hang-tmpfs") {
        true => report_error("hang-tmpfs", bench.latency(true, true).await),
        false => Err(SKIPPED.into()),
    };

    let results = Results {
        machine,
        partial: plan.partial(),
        runtime_seconds: started.elapsed().as_secs_f64(),
        ceiling,
        throughput,
        latency,
        hang,
        throughput_tmpfs,
        latency_tmpfs,
        hang_tmpfs,
    };
    let fine = |r: Result<(), &String>| r.is_ok() || r.is_err_and(|e| e.starts_with("skipped"));
    let ok = fine(results.ceiling.as_ref().map(|_| ()))
        && fine(results.throughput.as_ref().map(|_| ()))
        && fine(results.latency.as_ref().map(|_| ()))
        && fine(results.hang.as_ref().map(|_| ()))
        && fine(results.throughput_tmpfs.as_ref().map(|_| ()))
        && fine(results.latency_tmpfs.as_ref().map(|_| ()))
        && fine(results.hang_tmpfs.as_ref().map(|_| ()));
    // A broken pipeline (lost events, bad signatures) fails the bench; slow numbers do not.
    let mut broken = Vec::new();
    for (name, run) in [
        ("latency", &results.latency),
        ("hang", &results.hang),
        ("latency-tmpfs", &results.latency_tmpfs),
        ("hang-tmpfs", &results.hang_tmpfs),
    ] {
        if let Ok(l) = run
            && !l.all_delivered()
        {
            broken.push(format!(
                "{name}: {} of {} events delivered",
                l.delivered, l.published
            ));
        }
    }
    let infos = [
        results.throughput.as_ref().ok().map(|t| &t.info),
        results.latency.as_ref().ok().map(|l| &l.info),
        results.hang.as_ref().ok().map(|l| &l.info),
        results.throughput_tmpfs.as_ref().ok().map(|t| &t.info),
        results.latency_tmpfs.as_ref().ok().map(|l| &l.info),
        results.hang_tmpfs.as_ref().ok().map(|l| &l.info),
    ];
    for info in infos.into_iter().flatten() {
        if info.signatures_bad > 0 {
            broken.push(format!("{} bad signatures", info.signatures_bad));
        }
    }
    for problem in &broken {
        eprintln!("error: {problem}");
    }
    let ok = ok && broken.is_empty();
    let mut markdown = results.markdown();
    println!("{markdown}");
    let path = if plan.partial() {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("BENCHMARKS.partial.md")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md")
    };
    // Other benchmarks (controller, routes, chaos) own marked sections of the file: keep them.
    if let Ok(previous) = std::fs::read_to_string(&path) {
        for section in marked_sections(&previous) {
            markdown.push('\n');
            markdown.push_str(section);
            markdown.push('\n');
        }
    }
    std::fs::write(&path, markdown).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "wrote {} ({:.0} s in all)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ok)
}

/// The `<!-- NAME:start -->` ... `<!-- NAME:end -->` sections of a Markdown text, markers included.
fn marked_sections(text: &str) -> Vec<&str> {
    let mut sections = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!-- ") {
        let tail = &rest[start..];
        let Some(name_end) = tail.find(":start -->") else {
            break;
        };
        let end_marker = format!("<!-- {}:end -->", &tail[5..name_end]);
        let Some(end) = tail.find(&end_marker) else {
            break;
        };
        let stop = end + end_marker.len();
        sections.push(&tail[..stop]);
        rest = &tail[stop..];
    }
    sections
}

fn report_error<T>(name: &str, result: anyhow::Result<T>) -> Result<T, String> {
    result.map_err(|error| {
        let text = format!("{error:#}");
        eprintln!("[{name}] FAILED: {text}");
        text
    })
}

/// What a scenario's measurement gets: a connected publisher, a CPU meter started just now,
/// and the pipeline's admin address.
struct Run {
    publisher: Publisher,
    meters: Meters,
    admin: std::net::SocketAddr,
}

/// Measures a window: CPU of the processes and the machine, nats-server message counts.
struct Meters {
    cpu: CpuMeter,
    http: reqwest::Client,
    nats_monitor: std::net::SocketAddr,
    nats_start: Option<(u64, u64)>,
}

/// What the machine and nats-server did during a measured window.
struct Window {
    cpu: procs::CpuShare,
    nats_messages: Option<(u64, u64)>,
    seconds: f64,
}

impl Meters {
    /// Ends the measured window: CPU shares and nats-server message counts since it began.
    async fn stop(&self) -> Window {
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
    fn info(self, deliveries: u64, publisher: &Publisher) -> RunInfo {
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

struct Bench {
    nats_bin: PathBuf,
    http: reqwest::Client,
    plan: Plan,
}

/// One scenario's processes. Field order is drop order: pipeline, then nats, then the files.
struct Env {
    pipeline: Pipeline,
    nats: Nats,
    dir: TempDir,
}

impl Bench {
    /// Starts nats-server and the pipeline for `receiver`, runs `body`, and always collects the
    /// pipeline's log (also when starting or `body` failed).
    async fn with_pipeline<T, F, Fut>(
        &self,
        name: &str,
        receiver: &Receiver,
        hang: bool,
        tmpfs: bool,
        body: F,
    ) -> anyhow::Result<(T, RunInfo)>
    where
        F: FnOnce(Run) -> Fut,
        Fut: Future<Output = anyhow::Result<(T, RunInfo)>>,
    {
        let mut builder = tempfile::Builder::new();
        builder.prefix("pipeline-bench-");
        let dir = match tmpfs {
            true => builder.tempdir_in(TMPFS)?,
            false => builder.tempdir()?,
        };
        let started = self.start(dir.path(), receiver, hang).await;
        let log_path = dir.path().join("pipeline.log");
        let outcome = match started {
            Ok((nats, pipeline)) => {
                let env = Env {
                    pipeline,
                    nats,
                    dir,
                };
                let outcome = self.warm_and_run(name, &env, receiver, body).await;
                // Kill the processes before reading their logs; keep `dir` until then.
                let Env {
                    pipeline,
                    nats,
                    dir,
                } = env;
                drop(pipeline);
                drop(nats);
                (outcome, dir)
            }
            Err(error) => (Err(error), dir),
        };
        let (outcome, dir) = outcome;
        let log = LogSummary::read(&log_path);
        let copy = procs::keep_logs(name, dir.path());
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
        let (checked, bad) = receiver.signatures();
        info.signatures_checked = checked;
        info.signatures_bad = bad;
        info.receiver_problem = receiver.first_problem();
        Ok((value, info))
    }

    async fn start(
        &self,
        dir: &Path,
        receiver: &Receiver,
        hang: bool,
    ) -> anyhow::Result<(Nats, Pipeline)> {
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&manifests)?;
        std::fs::write(manifests.join("bench.yaml"), manifest_yaml(receiver, hang))?;
        let nats = procs::start_nats(&self.nats_bin, dir).await?;
        let pipeline = procs::start_pipeline(dir, &manifests, &nats.url, &self.http).await?;
        Ok((nats, pipeline))
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
        let cpu = CpuMeter::start(env.nats.proc.pid(), env.pipeline.proc.pid());
        body(Run {
            publisher,
            meters: Meters {
                cpu,
                http: self.http.clone(),
                nats_monitor: env.nats.monitor,
                nats_start,
            },
            admin: env.pipeline.admin,
        })
        .await
    }

    async fn throughput(&self, tmpfs: bool) -> anyhow::Result<Throughput> {
        let name = if tmpfs {
            "throughput-tmpfs"
        } else {
            "throughput"
        };
        let seconds = match tmpfs {
            true => self.plan.tmpfs_throughput_seconds,
            false => self.plan.throughput_seconds,
        };
        let warmup = self.plan.throughput_warmup;
        check_tmpfs(tmpfs)?;
        eprintln!("[{name}] {ENDPOINTS} endpoints, {seconds} s, as fast as the pipeline absorbs");
        let receiver = Receiver::start().await?;
        let http = self.http.clone();
        let rx = &receiver;
        let (mut result, info) = self
            .with_pipeline(name, &receiver, false, tmpfs, |mut run| async move {
                let publisher = &mut run.publisher;
                let window = Duration::from_secs(seconds as u64);
                rx.start_window(false);
                let started = Instant::now();
                let mut seq = 0u64;
                let mut next_report = 10;
                while started.elapsed() < window {
                    if seq.saturating_sub(rx.total()) >= MAX_BACKLOG {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    } else {
                        publisher.publish(seq).await;
                        seq += 1;
                    }
                    if started.elapsed().as_secs() >= next_report {
                        let last = rx.per_second(next_report as usize);
                        eprintln!(
                            "[{name}] {next_report:>3} s: {} delivered, last second {}/s, {} published",
                            rx.total(),
                            last.last().copied().unwrap_or(0),
                            publisher.sent()
                        );
                        next_report += 10;
                    }
                }
                let window = run.meters.stop().await;
                let window_deliveries = rx.total();
                let stopped = Instant::now();
                publisher.settle(Duration::from_secs(15)).await;
                let drained = wait_until(Duration::from_secs(30), || rx.unique() >= publisher.acked()).await.is_ok();
                let drain_seconds = drained.then(|| stopped.elapsed().as_secs_f64());
                let mut reported = None;
                let expected = rx.unique() + rx.warmup();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    reported = procs::pipeline_delivered(&http, run.admin).await.or(reported);
                    if reported.is_some_and(|r| r >= expected) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let per_second = rx.per_second(seconds);
                let mut steady: Vec<u64> = per_second[warmup.min(seconds.saturating_sub(1))..].to_vec();
                steady.sort_unstable();
                let result = Throughput {
                    seconds,
                    warmup,
                    median: median(&steady),
                    min: steady.first().copied().unwrap_or(0),
                    max: steady.last().copied().unwrap_or(0),
                    in_window: per_second.iter().sum(),
                    per_second,
                    published: publisher.acked(),
                    delivered: rx.unique(),
                    duplicates: rx.duplicates(),
                    drain_seconds,
                    pipeline_reported: reported,
                    info: RunInfo::default(),
                };
                let info = window.info(window_deliveries, publisher);
                Ok((result, info))
            })
            .await?;
        result.info = info;
        eprintln!(
            "[{name}] median {:.0} deliveries/s (min {}, max {}), {} published, {} delivered, CPU nats {:.2} pipeline {:.2} bench {:.2}",
            result.median,
            result.min,
            result.max,
            result.published,
            result.delivered,
            result.info.cpu.nats,
            result.info.cpu.pipeline,
            result.info.cpu.bench
        );
        Ok(result)
    }

    async fn latency(&self, hang: bool, tmpfs: bool) -> anyhow::Result<Latency> {
        let name = match (hang, tmpfs) {
            (true, true) => "hang-tmpfs",
            (true, false) => "hang",
            (false, true) => "latency-tmpfs",
            (false, false) => "latency",
        };
        check_tmpfs(tmpfs)?;
        let seconds = self.plan.latency_seconds;
        eprintln!(
            "[{name}] {ENDPOINTS} endpoints{}, {LATENCY_RATE} events/s for {seconds} s",
            if hang {
                " + 1 hanging endpoint on 10% of the events"
            } else {
                ""
            }
        );
        let receiver = Receiver::start().await?;
        let rx = &receiver;
        let (mut result, info) = self
            .with_pipeline(name, &receiver, hang, tmpfs, |mut run| async move {
                let publisher = &mut run.publisher;
                let window = Duration::from_secs(seconds as u64);
                let total = LATENCY_RATE * seconds as u64;
                rx.start_window(true);
                let started = Instant::now();
                let mut seq = 0u64;
                let mut next_report = 10;
                loop {
                    let elapsed = started.elapsed();
                    if elapsed >= window || seq >= total {
                        break;
                    }
                    let due = ((elapsed.as_secs_f64() * LATENCY_RATE as f64) as u64).min(total);
                    while seq < due {
                        publisher.publish(seq).await;
                        seq += 1;
                    }
                    if elapsed.as_secs() >= next_report {
                        eprintln!(
                            "[{name}] {next_report:>3} s: {} published, {} delivered",
                            publisher.sent(),
                            rx.total()
                        );
                        next_report += 10;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let window = run.meters.stop().await;
                let window_deliveries = rx.total();
                let stopped = Instant::now();
                publisher.settle(Duration::from_secs(15)).await;
                let drained =
                    wait_until(Duration::from_secs(20), || rx.unique() >= publisher.acked())
                        .await
                        .is_ok();
                let drain_seconds = drained.then(|| stopped.elapsed().as_secs_f64());
                rx.stop_recording();
                let samples = rx.samples();
                keep_samples(name, LATENCY_RATE, &samples);
                let mut latencies: Vec<u64> = samples.iter().map(|&(_, l)| l).collect();
                latencies.sort_unstable();
                if latencies.is_empty() {
                    bail!("no latency samples: nothing was delivered");
                }
                let ms = |p: f64| percentile(&latencies, p) as f64 / 1e6;
                let result = Latency {
                    rate: LATENCY_RATE,
                    seconds,
                    published: publisher.acked(),
                    delivered: rx.unique(),
                    duplicates: rx.duplicates(),
                    drain_seconds,
                    p50: ms(0.50),
                    p90: ms(0.90),
                    p99: ms(0.99),
                    max: ms(1.0),
                    slices: slices(&samples, LATENCY_RATE, seconds),
                    steady_p99: {
                        let skip = LATENCY_RATE * STEADY_AFTER;
                        let mut steady: Vec<u64> = samples
                            .iter()
                            .filter(|&&(seq, _)| seq >= skip)
                            .map(|&(_, l)| l)
                            .collect();
                        steady.sort_unstable();
                        (!steady.is_empty()).then(|| percentile(&steady, 0.99) as f64 / 1e6)
                    },
                    hang: hang.then(|| (rx.hang_hits(), HANG_SUBSCRIBED as f64 / ENDPOINTS as f64)),
                    info: RunInfo::default(),
                };
                let info = window.info(window_deliveries, publisher);
                Ok((result, info))
            })
            .await?;
        result.info = info;
        eprintln!(
            "[{name}] p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} of {} delivered{}",
            result.p50,
            result.p90,
            result.p99,
            result.max,
            result.delivered,
            result.published,
            result
                .hang
                .map(|(hits, _)| format!("; {hits} requests to the hanging endpoint"))
                .unwrap_or_default()
        );
        Ok(result)
    }

    async fn ceiling(&self) -> anyhow::Result<Ceiling> {
        let seconds = self.plan.ceiling_seconds;
        let receiver = Receiver::start().await?;
        let url = format!("http://{}/ceiling", receiver.addr);
        // Beyond the duplicate tracker, so every request takes the full path of a first receipt.
        let body = format!(
            r#"{{"seq":{},"sent_ns":0,"data":"{}"}}"#,
            WARMUP_SEQ - 1,
            "x".repeat(64)
        );
        let wrk = procs::command_output("which", &["wrk"]);
        eprintln!(
            "[ceiling] receiver alone, {CEILING_CONNECTIONS} keep-alive connections, {seconds} s, with {}",
            if wrk.is_some() {
                "wrk"
            } else {
                "the built-in reqwest load generator (wrk not installed)"
            }
        );
        receiver.start_window(false);
        let (tool, tool_rps) = match wrk {
            Some(wrk) => {
                let dir = tempfile::tempdir()?;
                let script = dir.path().join("post.lua");
                std::fs::write(
                    &script,
                    format!(
                        "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
                    ),
                )?;
                let output = tokio::time::timeout(
                    Duration::from_secs(seconds as u64 + 30),
                    tokio::process::Command::new(&wrk)
                        .args([
                            "-t2",
                            &format!("-c{CEILING_CONNECTIONS}"),
                            &format!("-d{seconds}s"),
                            "-s",
                        ])
                        .arg(&script)
                        .arg(&url)
                        .kill_on_drop(true)
                        .output(),
                )
                .await
                .context("wrk did not finish")??;
                let text = String::from_utf8_lossy(&output.stdout);
                let rps = text.lines().find_map(|l| {
                    l.trim()
                        .strip_prefix("Requests/sec:")
                        .and_then(|v| v.trim().parse::<f64>().ok())
                });
                if rps.is_none() {
                    bail!(
                        "wrk failed: {text} {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                ("wrk (2 threads)".to_owned(), rps)
            }
            None => {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(CEILING_CONNECTIONS)
                    .build()?;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds as u64);
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..CEILING_CONNECTIONS {
                    let (client, url, body) = (client.clone(), url.clone(), body.clone());
                    tasks.spawn(async move {
                        let mut ok = 0u64;
                        while tokio::time::Instant::now() < deadline {
                            let sent = client
                                .post(&url)
                                .header("content-type", "application/json")
                                .body(body.clone())
                                .timeout(Duration::from_secs(5))
                                .send()
                                .await;
                            if sent.is_ok_and(|r| r.status().is_success()) {
                                ok += 1;
                            }
                        }
                        ok
                    });
                }
                let mut ok = 0;
                while let Some(done) = tasks.join_next().await {
                    ok += done.unwrap_or(0);
                }
                (
                    "built-in reqwest client (same process)".to_owned(),
                    Some(ok as f64 / seconds as f64),
                )
            }
        };
        let mut per_second = receiver.per_second(seconds);
        // The first second includes connection set-up; the last may be cut short.
        let steady_range = 1..seconds.saturating_sub(1).max(2);
        per_second = per_second
            .get(steady_range)
            .map(<[u64]>::to_vec)
            .unwrap_or(per_second);
        per_second.sort_unstable();
        let result = Ceiling {
            tool,
            seconds,
            connections: CEILING_CONNECTIONS,
            median: median(&per_second),
            tool_rps,
        };
        eprintln!(
            "[ceiling] {:.0} requests/s (median of per-second counts)",
            result.median
        );
        if result.median <= 0.0 {
            bail!("the receiver counted no requests");
        }
        Ok(result)
    }
}

fn manifest_yaml(receiver: &Receiver, hang: bool) -> String {
    let endpoint = |name: &str, path: &str, event_types: &[String]| {
        format!(
            "apiVersion: webhook-operator.io/v1alpha1\n\
             kind: WebhookEndpoint\n\
             metadata: {{ name: {name}, namespace: {TENANT} }}\n\
             spec:\n  \
               url: http://{addr}/{path}\n  \
               secretRef: {{ name: bench-signing, key: secret }}\n  \
               timeout: 2s\n  \
               maxInFlight: 50\n  \
               retry: {{ maxAttempts: 3, initialBackoff: 1s, maxBackoff: 5s, maxAge: 1h }}\n\
             ---\n\
             apiVersion: webhook-operator.io/v1alpha1\n\
             kind: EventSubscription\n\
             metadata: {{ name: {name}, namespace: {TENANT} }}\n\
             spec:\n  \
               endpointRef: {{ name: {name} }}\n  \
               eventTypes: [{types}]\n\
             ---\n",
            addr = receiver.addr,
            types = event_types
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    let pattern = |i: usize| format!("bench.ep{i}.>");
    let mut yaml = String::new();
    for i in 0..ENDPOINTS {
        debug_assert!(event_type(i).starts_with(&pattern(i)[..pattern(i).len() - 1]));
        yaml.push_str(&endpoint(
            &format!("ep-{i}"),
            &format!("ep-{i}"),
            &[pattern(i)],
        ));
    }
    if hang {
        let patterns: Vec<String> = (0..HANG_SUBSCRIBED).map(pattern).collect();
        yaml.push_str(&endpoint("ep-hang", "hang", &patterns));
    }
    yaml.push_str(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: bench-signing, namespace: {TENANT} }}\nstringData: {{ secret: \"{SECRET}\" }}\n"
    ));
    yaml
}

/// (p50, p99) in ms of the events sent in each 5-second slice of the run.
fn slices(samples: &[(u64, u64)], rate: u64, seconds: usize) -> Vec<(f64, f64)> {
    let per_slice = rate * SLICE_SECONDS;
    (0..seconds as u64 / SLICE_SECONDS)
        .map(|i| {
            let mut slice: Vec<u64> = samples
                .iter()
                .filter(|&&(seq, _)| seq / per_slice == i)
                .map(|&(_, l)| l)
                .collect();
            slice.sort_unstable();
            if slice.is_empty() {
                return (0.0, 0.0);
            }
            (
                percentile(&slice, 0.5) as f64 / 1e6,
                percentile(&slice, 0.99) as f64 / 1e6,
            )
        })
        .collect()
}

/// Writes `send_time_ms,latency_us` per event (in send order) next to the kept logs, for
/// plotting where in time the slow deliveries fall.
fn keep_samples(name: &str, rate: u64, samples: &[(u64, u64)]) {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let mut csv = String::from("send_time_ms,latency_us\n");
    for (seq, latency) in sorted {
        csv.push_str(&format!(
            "{:.1},{}\n",
            seq as f64 * 1000.0 / rate as f64,
            latency / 1000
        ));
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pipeline-bench");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{name}-latency.csv")), csv);
    }
}

const TMPFS: &str = "/dev/shm";

/// Runs 1b, 2b and 3b need a tmpfs; without one they are skipped.
fn check_tmpfs(tmpfs: bool) -> anyhow::Result<()> {
    if tmpfs && !Path::new(TMPFS).is_dir() {
        bail!("skipped: {TMPFS} is not available");
    }
    Ok(())
}

/// Polls `done` every 20 ms for at most `timeout`.
async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn median(sorted: &[u64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2] as f64,
        n => (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
