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

#[path = "pipeline/parts.rs"]
mod parts;
#[path = "pipeline/report.rs"]
mod report;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use parts::{
    harness::{self, Harness, Setup},
    machine::Machine,
    numbers::{self, median, percentile},
    procs,
    receiver::{Receiver, WARMUP_SEQ},
    sections,
    world::{ENDPOINTS, HANG_SUBSCRIBED},
};
use report::{Ceiling, Latency, Results, Throughput};

const LATENCY_RATE: u64 = 1_000;
const CEILING_CONNECTIONS: usize = 64;
/// Latency runs: also report p99 of the events sent after this many seconds.
const STEADY_AFTER: u64 = 10;
const SLICE_SECONDS: u64 = 5;

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
    harness::main(run())
}

/// Runs every scenario; `Ok(false)` when one failed (the report still gets written).
async fn run() -> anyhow::Result<bool> {
    let started = Instant::now();
    let plan = Plan::from_env();
    let harness = Harness::new("pipeline-bench")?;
    let machine = Machine::detect(&harness.nats_bin);
    eprintln!(
        "pipeline bench: {} cores, nats-server {} ({}), pipeline {}",
        machine.cores,
        machine.nats_version,
        harness.nats_bin.display(),
        env!("CARGO_BIN_EXE_webhook-operator")
    );

    let bench = Bench { harness, plan };
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
    // Other benchmarks (controller, routes, chaos, ...) own marked sections of the file: keep them.
    if let Ok(previous) = std::fs::read_to_string(&path) {
        for section in sections::marked(&previous) {
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

fn report_error<T>(name: &str, result: anyhow::Result<T>) -> Result<T, String> {
    result.map_err(|error| {
        let text = format!("{error:#}");
        eprintln!("[{name}] FAILED: {text}");
        text
    })
}

struct Bench {
    harness: Harness,
    plan: Plan,
}

impl Bench {
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
        eprintln!("[{name}] {ENDPOINTS} endpoints, {seconds} s, as fast as the pipeline absorbs");
        let receiver = Receiver::start().await?;
        let http = self.harness.http.clone();
        let rx = &receiver;
        let setup = Setup {
            name,
            receiver: &receiver,
            hang: false,
            tmpfs,
            processes: 1,
        };
        let (mut result, info) = self
            .harness
            .with_pipeline(setup, |mut run| async move {
                let saturated = harness::saturate(name, &mut run, rx, seconds, warmup).await;
                let mut reported = None;
                let expected = rx.unique() + rx.warmup();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    reported = procs::pipeline_delivered(&http, run.admins[0])
                        .await
                        .or(reported);
                    if reported.is_some_and(|r| r >= expected) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let steady = &saturated.steady;
                let result = Throughput {
                    seconds,
                    warmup,
                    median: median(steady),
                    min: steady.first().copied().unwrap_or(0),
                    max: steady.last().copied().unwrap_or(0),
                    in_window: saturated.per_second.iter().sum(),
                    per_second: saturated.per_second,
                    published: run.publisher.acked(),
                    delivered: rx.unique(),
                    duplicates: rx.duplicates(),
                    drain_seconds: saturated.drain_seconds,
                    pipeline_reported: reported,
                    info: Default::default(),
                };
                Ok((result, saturated.info))
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
        let setup = Setup {
            name,
            receiver: &receiver,
            hang,
            tmpfs,
            processes: 1,
        };
        let (mut result, info) = self
            .harness
            .with_pipeline(setup, |mut run| async move {
                let paced = harness::paced(
                    name,
                    &mut run,
                    rx,
                    (LATENCY_RATE, seconds as u64),
                    10,
                    Duration::from_secs(20),
                )
                .await;
                let samples = paced.samples;
                keep_samples(name, LATENCY_RATE, &samples);
                let mut latencies: Vec<u64> = samples.iter().map(|&(_, l)| l).collect();
                latencies.sort_unstable();
                if latencies.is_empty() {
                    bail!("no latency samples: nothing was delivered");
                }
                let ms = |p: f64| percentile(&latencies, p) as f64 / 1e6;
                let per_slice = LATENCY_RATE * SLICE_SECONDS;
                let result = Latency {
                    rate: LATENCY_RATE,
                    seconds,
                    published: run.publisher.acked(),
                    delivered: rx.unique(),
                    duplicates: rx.duplicates(),
                    drain_seconds: paced.drain_seconds,
                    p50: ms(0.50),
                    p90: ms(0.90),
                    p99: ms(0.99),
                    max: ms(1.0),
                    slices: numbers::by_send_slice(
                        &samples,
                        per_slice,
                        seconds / SLICE_SECONDS as usize,
                    )
                    .iter()
                    .map(|s| (s.p50_ms, s.p99_ms))
                    .collect(),
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
                    pacing: paced.pacing,
                    info: Default::default(),
                };
                Ok((result, paced.info))
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
