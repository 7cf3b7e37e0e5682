//! Soak: the real pipeline at a steady rate for a long time, to show memory and latency stay
//! flat. By default 10 minutes at 1,000 events/s: a fresh nats-server (JetStream on file
//! storage in a temporary directory), `webhook-operator local` (release build), 100 endpoints of
//! one tenant on the bench's own HTTP receiver, and a paced, open-loop publisher.
//!
//! Reports the resident memory (RSS) of the pipeline process(es) and nats-server at the end of
//! every slice of the run (a minute for the full run) and its growth from the end of the first
//! slice (after warm-up) to the end; publish -> receipt latency percentiles per slice of send
//! time; events sent, delivered, lost and duplicated; whether the publisher kept its schedule.
//! Targets: RSS growth under 10%, nothing lost. Writes the `soak` section of BENCHMARKS.md.
//!
//! `make soak`, or `NATS_SERVER_BIN=... cargo bench --bench soak`. `SOAK_SECONDS` and
//! `SOAK_RATE` shorten or change the run (the section then says it was a short run);
//! `SOAK_PROCESSES` runs several pipeline processes sharing the work.
//!
//! Rust rather than a script: the receiver here (shared with the pipeline bench) takes ~70,000
//! requests/s on this machine, the chaos run's Python receiver ~7,500 at 0.8 cores with 400 ms
//! stalls, which would show up as the pipeline's latency.

#[path = "pipeline/parts.rs"]
mod parts;
#[path = "soak/report.rs"]
mod soak_report;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use parts::{
    harness::{self, Harness, RunInfo, Setup},
    machine::Machine,
    numbers::{self, percentile},
    pacing::Pacing,
    procs,
    receiver::{self, Receiver},
    sections,
    world::ENDPOINTS,
};

const FULL_SECONDS: u64 = 600;
const FULL_RATE: u64 = 1_000;
/// How long the receiver may take to get the last events after publishing stopped.
const DRAIN_FOR: Duration = Duration::from_secs(60);

fn main() -> std::process::ExitCode {
    harness::main(run())
}

/// What a soak run is asked to do (`SOAK_*` environment variables).
pub struct Config {
    pub seconds: u64,
    pub rate: u64,
    pub processes: usize,
    /// Latency and memory are reported per slice of this many seconds.
    pub slice_seconds: u64,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let number = harness::env_number;
        let seconds = number("SOAK_SECONDS", FULL_SECONDS)?;
        let rate = number("SOAK_RATE", FULL_RATE)?;
        if rate.saturating_mul(seconds) > receiver::SEEN_CAPACITY as u64 {
            bail!(
                "SOAK_RATE x SOAK_SECONDS is over {}, the events the receiver tracks for duplicates",
                receiver::SEEN_CAPACITY
            );
        }
        Ok(Self {
            seconds,
            rate,
            processes: number("SOAK_PROCESSES", 1)? as usize,
            // A minute in the full run; ten slices or fewer in a shorter one.
            slice_seconds: (seconds / 10).clamp(10, 60).min(seconds),
        })
    }

    pub fn full(&self) -> bool {
        self.seconds >= FULL_SECONDS && self.rate == FULL_RATE
    }

    pub fn slices(&self) -> usize {
        self.seconds.div_ceil(self.slice_seconds) as usize
    }

    /// The command that reproduces this run.
    pub fn command(&self) -> String {
        harness::command("soak", &["SOAK_SECONDS", "SOAK_RATE", "SOAK_PROCESSES"])
    }
}

/// Resident memory at one moment, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Every pipeline process together.
    pub pipelines: u64,
    pub nats: u64,
}

impl Memory {
    fn now(nats: u32, pipelines: &[u32]) -> Self {
        Self {
            pipelines: pipelines
                .iter()
                .filter_map(|&pid| procs::rss_bytes(pid))
                .sum(),
            nats: procs::rss_bytes(nats).unwrap_or(0),
        }
    }
}

pub struct Soak {
    pub pacing: Pacing,
    /// Latency by slice of send time.
    pub slices: Vec<numbers::Slice>,
    /// Right after the warm-up, before publishing.
    pub memory_before: Memory,
    /// At the end of each slice.
    pub memory: Vec<Memory>,
    pub acked: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub drain_seconds: Option<f64>,
    /// Whole run: p50, p99, max in ms.
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub info: RunInfo,
}

impl Soak {
    pub fn lost(&self) -> u64 {
        self.acked.saturating_sub(self.delivered)
    }

    /// (start, end, growth) of the pipelines' RSS: end of the first slice -> end of the last.
    pub fn pipeline_growth(&self) -> Option<(u64, u64, f64)> {
        growth(&self.memory, |m| m.pipelines)
    }

    pub fn nats_growth(&self) -> Option<(u64, u64, f64)> {
        growth(&self.memory, |m| m.nats)
    }
}

fn growth(memory: &[Memory], of: fn(&Memory) -> u64) -> Option<(u64, u64, f64)> {
    let start = of(memory.first()?);
    let end = of(memory.last()?);
    (start > 0).then(|| (start, end, end as f64 / start as f64 - 1.0))
}

async fn run() -> anyhow::Result<bool> {
    let started = Instant::now();
    let config = Config::from_env()?;
    let harness = Harness::new("soak-bench")?;
    let machine = Machine::detect(&harness.nats_bin);
    eprintln!(
        "soak: {} events/s for {} s, {ENDPOINTS} endpoints, {} pipeline process(es) ({}), {} cores, load {}",
        config.rate,
        config.seconds,
        config.processes,
        env!("CARGO_BIN_EXE_webhook-operator"),
        machine.cores,
        machine.load
    );
    let receiver = Receiver::start().await?;
    let rx = &receiver;
    let config_ref = &config;
    let setup = Setup {
        name: "soak",
        receiver: &receiver,
        hang: false,
        tmpfs: false,
        processes: config.processes,
    };
    let (mut soak, info) = harness
        .with_pipeline(setup, |mut run| async move {
            let config = config_ref;
            let (nats, pipelines) = (run.pids.nats, run.pids.pipelines.clone());
            let memory_before = Memory::now(nats, &pipelines);
            let sample_memory = async {
                let start = tokio::time::Instant::now();
                let mut memory = Vec::with_capacity(config.slices());
                for k in 1..=config.slices() as u64 {
                    let at = (k * config.slice_seconds).min(config.seconds);
                    tokio::time::sleep_until(start + Duration::from_secs(at)).await;
                    let now = Memory::now(nats, &pipelines);
                    eprintln!(
                        "[soak] {at:>4} s: RSS pipeline {}, nats-server {}",
                        numbers::mib(now.pipelines),
                        numbers::mib(now.nats),
                    );
                    memory.push(now);
                }
                memory
            };
            let (paced, memory) = tokio::join!(
                harness::paced(
                    "soak",
                    &mut run,
                    rx,
                    (config.rate, config.seconds),
                    config.slice_seconds,
                    DRAIN_FOR
                ),
                sample_memory
            );
            let samples = paced.samples;
            let mut latencies: Vec<u64> = samples.iter().map(|&(_, l)| l).collect();
            latencies.sort_unstable();
            if latencies.is_empty() {
                bail!("no latency samples: nothing was delivered");
            }
            let ms = |p: f64| percentile(&latencies, p) as f64 / 1e6;
            let soak = Soak {
                pacing: paced.pacing,
                slices: numbers::by_send_slice(
                    &samples,
                    config.rate * config.slice_seconds,
                    config.slices(),
                ),
                memory_before,
                memory,
                acked: run.publisher.acked(),
                delivered: rx.unique(),
                duplicates: rx.duplicates(),
                drain_seconds: paced.drain_seconds,
                p50: ms(0.50),
                p99: ms(0.99),
                max: ms(1.0),
                info: Default::default(),
            };
            Ok((soak, paced.info))
        })
        .await?;
    soak.info = info;
    let body = soak_report::section(&config, &soak, &machine, started.elapsed());
    println!("\n{body}");
    let path = sections::write("soak", &body).context("writing BENCHMARKS.md")?;
    eprintln!("wrote the soak section of {}", path.display());
    // Lost events or bad signatures fail the run; missed targets are reported, not fatal.
    let broken = soak.lost() > 0 || soak.info.signatures_bad > 0;
    if broken {
        eprintln!(
            "error: {} events lost, {} bad signatures",
            soak.lost(),
            soak.info.signatures_bad
        );
    }
    Ok(!broken)
}
