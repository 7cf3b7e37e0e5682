//! Scale-out: deliveries/s for one tenant (100 endpoints) as 1, 2 and 3 pipeline processes
//! share its work through the durable consumers (the router's events consumer, each endpoint's
//! delivery consumer, the stats consumer).
//!
//! The processes are `webhook-operator local`: router and delivery in one process, on the same
//! durable consumers that separate `router` and `deliver --tenant` replicas share in a cluster
//! (`deliver` reads its tenant's Secrets from the Kubernetes API, so it cannot run here alone).
//! Each run starts a fresh nats-server and N processes and saturates them as the pipeline
//! bench's run 1 does (closed loop, at most 20,000 events not yet delivered); deliveries/s is
//! the median of the receiver's per-second counts after the warm-up seconds. Runs are
//! interleaved (1, 2, 3, 1, 2, 3, ...) so that noise from other work spreads over every N.
//!
//! `make bench-scaleout` (also part of `make bench`). `SCALEOUT_PROCESSES` (default `1,2,3`),
//! `SCALEOUT_RUNS` (3) and `SCALEOUT_SECONDS` (30) change the configuration; the section says
//! when it is not the default one. Writes the `scaleout` section of BENCHMARKS.md.

#[path = "pipeline/parts.rs"]
mod parts;

use std::{fmt::Write as _, time::Instant};

use anyhow::{Context as _, bail};

use parts::{
    harness::{self, Harness, Setup},
    machine::{Machine, load_average},
    numbers::{median, median_f64, thousands},
    procs::{self, CpuShare},
    receiver::Receiver,
    sections,
    world::ENDPOINTS,
};

const DEFAULT_PROCESSES: [usize; 3] = [1, 2, 3];
const DEFAULT_RUNS: usize = 3;
const DEFAULT_SECONDS: usize = 30;

fn main() -> std::process::ExitCode {
    harness::main(run())
}

struct Config {
    processes: Vec<usize>,
    runs: usize,
    seconds: usize,
    /// Leading seconds of each run left out of its median.
    warmup: usize,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let count = |name: &str, default: usize| -> anyhow::Result<usize> {
            Ok(harness::env_number(name, default as u64)? as usize)
        };
        let processes = match var("SCALEOUT_PROCESSES") {
            Some(list) => list
                .split(',')
                .map(|n| match n.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => bail!("SCALEOUT_PROCESSES: {n:?} is not a process count"),
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => DEFAULT_PROCESSES.to_vec(),
        };
        let seconds = count("SCALEOUT_SECONDS", DEFAULT_SECONDS)?.max(4);
        Ok(Self {
            processes,
            runs: count("SCALEOUT_RUNS", DEFAULT_RUNS)?,
            seconds,
            warmup: (seconds / 6).clamp(1, 5),
        })
    }

    fn default_one(&self) -> bool {
        self.processes == DEFAULT_PROCESSES
            && self.runs == DEFAULT_RUNS
            && self.seconds == DEFAULT_SECONDS
    }

    fn command(&self) -> String {
        harness::command(
            "bench-scaleout",
            &["SCALEOUT_PROCESSES", "SCALEOUT_RUNS", "SCALEOUT_SECONDS"],
        )
    }
}

/// One run with `processes` pipeline processes.
struct Measured {
    processes: usize,
    /// Median of the per-second deliveries after the warm-up.
    rate: f64,
    cpu: CpuShare,
    /// Share of the successful deliveries each process made.
    shares: Vec<f64>,
    lost: u64,
    duplicates: u64,
}

async fn run() -> anyhow::Result<bool> {
    let started = Instant::now();
    let config = Config::from_env()?;
    let harness = Harness::new("scaleout-bench")?;
    let machine = Machine::detect(&harness.nats_bin);
    eprintln!(
        "scale-out bench: {:?} processes, {} runs each, {} s per run; {} cores, load {}",
        config.processes, config.runs, config.seconds, machine.cores, machine.load
    );
    let mut measured = Vec::new();
    for round in 0..config.runs {
        for &processes in &config.processes {
            let name = format!("{processes}-processes-run-{}", round + 1);
            measured.push(measure(&harness, &config, &name, processes).await?);
        }
    }
    let body = section(
        &config,
        &measured,
        &machine,
        started.elapsed().as_secs_f64(),
    );
    println!("\n{body}");
    let path = sections::write("scaleout", &body).context("writing BENCHMARKS.md")?;
    eprintln!("wrote the scale-out section of {}", path.display());
    let lost: u64 = measured.iter().map(|m| m.lost).sum();
    if lost > 0 {
        eprintln!("error: {lost} events were not delivered");
    }
    Ok(lost == 0)
}

async fn measure(
    harness: &Harness,
    config: &Config,
    name: &str,
    processes: usize,
) -> anyhow::Result<Measured> {
    eprintln!(
        "[{name}] {ENDPOINTS} endpoints, {processes} pipeline process(es), {} s as fast as they absorb",
        config.seconds
    );
    let receiver = Receiver::start().await?;
    let rx = &receiver;
    let http = harness.http.clone();
    let setup = Setup {
        name,
        receiver: &receiver,
        hang: false,
        tmpfs: false,
        processes,
    };
    let ((rate, shares, acked), info) = harness
        .with_pipeline(setup, |mut run| async move {
            let saturated =
                harness::saturate(name, &mut run, rx, config.seconds, config.warmup).await;
            let mut successes = Vec::with_capacity(run.admins.len());
            for admin in &run.admins {
                successes.push(
                    procs::delivery_successes(&http, *admin)
                        .await
                        .unwrap_or(0.0),
                );
            }
            let total: f64 = successes.iter().sum();
            let shares = successes
                .iter()
                .map(|s| if total > 0.0 { s / total } else { 0.0 })
                .collect();
            let rate = median(&saturated.steady);
            Ok(((rate, shares, run.publisher.acked()), saturated.info))
        })
        .await?;
    let result = Measured {
        processes,
        rate,
        cpu: info.cpu,
        shares,
        lost: acked.saturating_sub(receiver.unique()),
        duplicates: receiver.duplicates(),
    };
    eprintln!(
        "[{name}] {:.0} deliveries/s; CPU: {}",
        result.rate,
        result
            .cpu
            .describe(std::thread::available_parallelism().map_or(0, |n| n.get()))
    );
    Ok(result)
}

/// The body of the `scaleout` section.
fn section(config: &Config, measured: &[Measured], machine: &Machine, runtime: f64) -> String {
    let cores = machine.cores;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Scale-out: pipeline processes sharing one tenant's work\n"
    );
    if !config.default_one() {
        let _ = writeln!(
            out,
            "**Short configuration** ({} s per run, {} run{} per row), a check of the bench itself; the full \
             one is `make bench-scaleout` on a quiet machine.\n",
            config.seconds,
            config.runs,
            if config.runs == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(
        out,
        "Command: `{}` (runs `cargo bench --bench scaleout`), {}; {runtime:.0} s in all. {}\n",
        config.command(),
        machine.date,
        machine.note(&load_average())
    );
    let _ = writeln!(
        out,
        "One tenant of {ENDPOINTS} endpoints (one subscription each), N `webhook-operator local` processes on one \
         nats-server sharing the durable consumers: the router's events consumer, every endpoint's delivery \
         consumer and the stats consumer, as separate `router` and `deliver --tenant` replicas share them in a \
         cluster. Each run starts fresh and saturates the pipeline as run 1 above does (closed loop, at most \
         20,000 events published but not yet delivered) for {} s; its rate is the median of the receiver's \
         per-second counts after the first {} s. A row is the median of {} run{}, interleaved with the other \
         rows' runs. CPU is the mean over a row's runs, in cores; *deliveries per process* is each process's \
         share of successful attempts (its `/metrics`).\n",
        config.seconds,
        config.warmup,
        config.runs,
        if config.runs == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        out,
        "| processes | deliveries/s (median of runs) | each run | vs 1 process | CPU: nats-server / pipelines / bench / other processes | busy, of {cores} cores | deliveries per process | lost / duplicates |\n|---|---|---|---|---|---|---|---|"
    );
    let rows = rows(config, measured);
    let base = rows.iter().find(|r| r.processes == 1).map(|r| r.rate);
    for row in &rows {
        let c = row.cpu;
        let _ = writeln!(
            out,
            "| {} | **{}** | {} | {} | {:.2} / {:.2} / {:.2} / {:.2} | {:.2} | {} | {} / {} |",
            row.processes,
            thousands(row.rate),
            row.runs
                .iter()
                .map(|r| thousands(*r))
                .collect::<Vec<_>>()
                .join(", "),
            base.map_or("".into(), |b| format!("x{:.2}", row.rate / b)),
            c.nats,
            c.pipeline,
            c.bench,
            c.others,
            c.ours() + c.others,
            row.shares
                .iter()
                .map(|s| format!("{:.0}%", s * 100.0))
                .collect::<Vec<_>>()
                .join(" / "),
            row.lost,
            row.duplicates
        );
    }
    let _ = writeln!(out, "\n{}", verdict(&rows, cores));
    out
}

/// A row of the table: every run with the same process count.
struct Row {
    processes: usize,
    rate: f64,
    runs: Vec<f64>,
    cpu: CpuShare,
    shares: Vec<f64>,
    lost: u64,
    duplicates: u64,
}

fn rows(config: &Config, measured: &[Measured]) -> Vec<Row> {
    config
        .processes
        .iter()
        .map(|&processes| {
            let runs: Vec<&Measured> = measured
                .iter()
                .filter(|m| m.processes == processes)
                .collect();
            let n = runs.len().max(1) as f64;
            let mean = |f: fn(&CpuShare) -> f64| runs.iter().map(|m| f(&m.cpu)).sum::<f64>() / n;
            Row {
                processes,
                rate: median_f64(runs.iter().map(|m| m.rate).collect()),
                runs: runs.iter().map(|m| m.rate).collect(),
                cpu: CpuShare {
                    nats: mean(|c| c.nats),
                    pipeline: mean(|c| c.pipeline),
                    bench: mean(|c| c.bench),
                    others: mean(|c| c.others),
                    nats_kernel: mean(|c| c.nats_kernel),
                },
                shares: (0..processes)
                    .map(|i| {
                        runs.iter()
                            .map(|m| m.shares.get(i).copied().unwrap_or(0.0))
                            .sum::<f64>()
                            / n
                    })
                    .collect(),
                lost: runs.iter().map(|m| m.lost).sum(),
                duplicates: runs.iter().map(|m| m.duplicates).sum(),
            }
        })
        .collect()
}

/// What the table says about where the limit is.
fn verdict(rows: &[Row], cores: usize) -> String {
    let busy = |r: &Row| r.cpu.ours() + r.cpu.others;
    let saturated: Vec<String> = rows
        .iter()
        .filter(|r| busy(r) >= 0.9 * cores as f64)
        .map(|r| r.processes.to_string())
        .collect();
    let mut text = String::from(
        "Work is shared: with more than one process each made a share of the deliveries (second-to-last column). ",
    );
    if saturated.is_empty() {
        let _ = write!(
            text,
            "The CPU was not saturated in any row (at most {:.2} of {cores} cores busy): throughput is bounded by \
             waiting (round trips to nats-server, its store) rather than by the machine.",
            rows.iter().map(busy).fold(0.0, f64::max)
        );
    } else {
        let _ = write!(
            text,
            "{} the machine was the limit: at least 90% of its {cores} cores were busy, shared by nats-server, the \
             pipelines and the bench's own publisher and receiver, so another process can only take CPU from the \
             others and throughput flattens. More cores (or nats-server and the receivers on other machines) are \
             what lets more processes add throughput.",
            if saturated.len() == rows.len() {
                "In every row".to_owned()
            } else {
                format!("With {} processes", saturated.join(", "))
            }
        );
    }
    let others = rows.iter().map(|r| r.cpu.others).fold(0.0, f64::max);
    if others >= 0.25 * cores as f64 {
        let _ = write!(
            text,
            " Other work on the machine took up to {others:.2} cores during these runs: the rows understate the \
             pipeline and compare poorly with each other."
        );
    }
    text
}
