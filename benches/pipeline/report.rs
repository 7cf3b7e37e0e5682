//! Results and their rendering as Markdown (BENCHMARKS.md and stdout).

use std::fmt::Write as _;

use crate::parts::{harness::RunInfo, machine::Machine, numbers::thousands, pacing::Pacing};

pub const TARGET_THROUGHPUT: f64 = 5_000.0;
pub const TARGET_P99_MS: f64 = 25.0;
pub const TARGET_HANG_RATIO: f64 = 1.25;

pub struct Throughput {
    pub seconds: usize,
    pub warmup: usize,
    pub per_second: Vec<u64>,
    pub median: f64,
    pub min: u64,
    pub max: u64,
    pub in_window: u64,
    pub published: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub drain_seconds: Option<f64>,
    pub pipeline_reported: Option<u64>,
    pub info: RunInfo,
}

pub struct Latency {
    pub rate: u64,
    pub seconds: usize,
    pub published: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub drain_seconds: Option<f64>,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// (p50, p99) in ms per 5-second slice of send time.
    pub slices: Vec<(f64, f64)>,
    /// p99 (ms) of the events sent after the first 10 s.
    pub steady_p99: Option<f64>,
    /// Hanging-endpoint run: attempts that reached the hanging path, share of events it gets.
    pub hang: Option<(u64, f64)>,
    pub pacing: Pacing,
    pub info: RunInfo,
}

/// CPU time per delivery, in microseconds.
pub struct CpuCost {
    pub nats: f64,
    pub pipeline: f64,
    pub bench: f64,
}

impl CpuCost {
    pub fn total(&self) -> f64 {
        self.nats + self.pipeline + self.bench
    }

    /// Deliveries per second `cores` could carry at this cost.
    pub fn capacity(&self, cores: usize) -> f64 {
        cores as f64 * 1e6 / self.total()
    }
}

impl Throughput {
    pub fn cpu_cost(&self) -> Option<CpuCost> {
        let rate = self.in_window as f64 / self.seconds.max(1) as f64;
        let c = self.info.cpu;
        (rate > 0.0 && c.ours() > 0.0).then(|| CpuCost {
            nats: c.nats * 1e6 / rate,
            pipeline: c.pipeline * 1e6 / rate,
            bench: c.bench * 1e6 / rate,
        })
    }
}

impl Latency {
    pub fn all_delivered(&self) -> bool {
        self.delivered >= self.published && self.published > 0
    }
}

pub struct Ceiling {
    pub tool: String,
    pub seconds: usize,
    pub connections: usize,
    pub median: f64,
    pub tool_rps: Option<f64>,
}

pub struct Results {
    pub machine: Machine,
    pub partial: bool,
    pub runtime_seconds: f64,
    pub ceiling: Result<Ceiling, String>,
    pub throughput: Result<Throughput, String>,
    pub latency: Result<Latency, String>,
    pub hang: Result<Latency, String>,
    /// Runs 1-3 again with the JetStream store on tmpfs.
    pub throughput_tmpfs: Result<Throughput, String>,
    pub latency_tmpfs: Result<Latency, String>,
    pub hang_tmpfs: Result<Latency, String>,
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn drain(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) => format!("yes, {s:.1} s after the publisher stopped"),
        None => "**no** (timed out)".into(),
    }
}

fn common_rows(out: &mut String, info: &RunInfo, cores: usize) {
    let _ = writeln!(out, "| CPU used, cores | {} |", info.cpu.describe(cores));
    if let Some((nats_in, nats_out)) = info.nats_messages
        && info.window_seconds > 0.0
        && info.window_deliveries > 0
    {
        let per = |n: u64| n as f64 / info.window_deliveries as f64;
        let _ = writeln!(
            out,
            "| nats-server client messages (`/varz`) | {} in/s, {} out/s; per delivery {:.1} in, {:.1} out |",
            thousands(nats_in as f64 / info.window_seconds),
            thousands(nats_out as f64 / info.window_seconds),
            per(nats_in),
            per(nats_out)
        );
    }
    let _ = writeln!(
        out,
        "| Signatures verified (HMAC) | {} checked, {} bad{} |",
        info.signatures_checked,
        info.signatures_bad,
        info.receiver_problem
            .as_deref()
            .map(|p| format!(" ({})", escape(p)))
            .unwrap_or_default()
    );
    if info.publish_failed > 0 {
        let _ = writeln!(
            out,
            "| Publish failures | {} ({}) |",
            info.publish_failed,
            escape(info.publish_error.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(out, "| Pipeline log | {} |", info.log.describe());
    for sample in &info.log.samples {
        let _ = writeln!(
            out,
            "| | `{}` |",
            sample.replace('`', "'").replace('|', "/")
        );
    }
}

const TMPFS_INTRO: &str = "The same scenario with nats-server's store directory on tmpfs (`/dev/shm`) instead of \
    the default temporary directory: the same JetStream file-store code, minus the disk and filesystem. \
    The difference to the run above is what the filesystem costs on this machine.";

fn throughput_table(out: &mut String, t: &Throughput, cores: usize) {
    let _ = writeln!(out, "| Metric | Value |\n|---|---|");
    let _ = writeln!(
        out,
        "| Window | {} s, first {} s skipped as warm-up |",
        t.seconds, t.warmup
    );
    let _ = writeln!(
        out,
        "| **Deliveries/s** (median of per-second receiver counts, steady part) | **{}** (target >= {}) |",
        thousands(t.median),
        thousands(TARGET_THROUGHPUT)
    );
    let _ = writeln!(
        out,
        "| Min / max per second (steady part) | {} / {} |",
        thousands(t.min as f64),
        thousands(t.max as f64)
    );
    let _ = writeln!(
        out,
        "| Deliveries in the {} s window | {} |",
        t.seconds,
        thousands(t.in_window as f64)
    );
    let _ = writeln!(
        out,
        "| Events published (acked) | {} |",
        thousands(t.published as f64)
    );
    let _ = writeln!(
        out,
        "| Delivered in the end | {} ({} duplicates); all delivered: {} |",
        thousands(t.delivered as f64),
        t.duplicates,
        drain(t.drain_seconds)
    );
    if let Some(reported) = t.pipeline_reported {
        let _ = writeln!(
            out,
            "| Pipeline's own `delivered` counters (GET /v1/endpoints, incl. warm-up) | {} |",
            thousands(reported as f64)
        );
    }
    let _ = writeln!(
        out,
        "| Per-second counts | {} |",
        t.per_second
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(cost) = t.cpu_cost() {
        let _ = writeln!(
            out,
            "| CPU per delivery (whole window) | {:.0} µs: nats-server {:.0}, pipeline {:.0}, bench {:.0} |",
            cost.total(),
            cost.nats,
            cost.pipeline,
            cost.bench
        );
        let _ = writeln!(
            out,
            "| Ceiling implied by that cost on {cores} idle cores | ~{} deliveries/s (linear estimate) |",
            thousands(cost.capacity(cores))
        );
    }
    common_rows(out, &t.info, cores);
}

/// `base`: the run to compare with (run 2, for the hanging-endpoint run).
fn latency_table(out: &mut String, l: &Latency, base: Option<&Latency>, cores: usize) {
    let _ = writeln!(out, "| Metric | Value |\n|---|---|");
    let _ = writeln!(
        out,
        "| Rate x duration | {} events/s x {} s |",
        thousands(l.rate as f64),
        l.seconds
    );
    let _ = writeln!(out, "| p50 | {:.2} ms |", l.p50);
    let _ = writeln!(out, "| p90 | {:.2} ms |", l.p90);
    let _ = writeln!(
        out,
        "| **p99** | **{:.2} ms** (target <= {TARGET_P99_MS:.0} ms) |",
        l.p99
    );
    let _ = writeln!(out, "| max | {:.2} ms |", l.max);
    let slices: Vec<String> = l
        .slices
        .iter()
        .enumerate()
        .map(|(i, (p50, p99))| format!("{}-{} s: {p50:.1} / {p99:.1}", i * 5, i * 5 + 5))
        .collect();
    let _ = writeln!(
        out,
        "| p50 / p99 (ms) by send time | {} |",
        slices.join("; ")
    );
    if let Some(steady) = l.steady_p99 {
        let _ = writeln!(
            out,
            "| p99 of events sent after the first 10 s | {steady:.2} ms |"
        );
    }
    if let Some(base) = base {
        let _ = writeln!(
            out,
            "| vs the same run without it | p50 x{:.2}, **p99 x{:.2}** (target <= x{TARGET_HANG_RATIO:.2}){} |",
            l.p50 / base.p50,
            l.p99 / base.p99,
            match (l.steady_p99, base.steady_p99) {
                (Some(a), Some(b)) => format!("; after the first 10 s: p99 x{:.2}", a / b),
                _ => String::new(),
            }
        );
    }
    if let Some((hits, share)) = l.hang {
        let _ = writeln!(
            out,
            "| Hanging endpoint | {:.0}% of events; {} requests reached it (each held until the 2 s timeout) |",
            share * 100.0,
            thousands(hits as f64)
        );
    }
    let _ = writeln!(out, "| Publisher schedule | {} |", l.pacing.describe());
    let _ = writeln!(
        out,
        "| Published (acked) | {} |",
        thousands(l.published as f64)
    );
    let _ = writeln!(
        out,
        "| Delivered == published | {} ({} unique, {} duplicates); drained: {} |",
        met(l.all_delivered()),
        thousands(l.delivered as f64),
        l.duplicates,
        drain(l.drain_seconds)
    );
    common_rows(out, &l.info, cores);
}

/// A scenario that did not produce numbers: skipped on purpose, or failed.
fn failure(error: &str) -> String {
    if error.starts_with("skipped") {
        escape(error)
    } else {
        format!("failed: {}", escape(error))
    }
}

fn failure_met(error: &str) -> &'static str {
    if error.starts_with("skipped") {
        ""
    } else {
        "**no**"
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "/").replace('\n', " ")
}

impl Results {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let cores = m.cores;
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "End-to-end numbers of the delivery pipeline on one machine: publisher -> NATS JetStream -> \
             `webhook-operator local` -> HTTP receiver. Written by `benches/pipeline.rs` on every run, so \
             this file always shows the last run.{}\n",
            if self.partial {
                " **Partial run (`PIPELINE_BENCH_QUICK` or `PIPELINE_BENCH_ONLY`): not representative.**"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "Command: `make bench` (runs `NATS_SERVER_BIN=$(CURDIR)/.tools/bin/nats-server cargo bench --bench pipeline`).\n"
        );
        let _ = writeln!(out, "## Machine\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| Date | {} |", m.date);
        let _ = writeln!(out, "| CPU | {} |", m.cpu);
        let _ = writeln!(out, "| Cores (`nproc`) | {cores} |");
        let _ = writeln!(out, "| Memory | {:.1} GiB |", m.memory_gib);
        let _ = writeln!(out, "| Kernel (`uname -r`) | {} |", m.kernel);
        let _ = writeln!(out, "| Load average at start | {} |", m.load);
        let _ = writeln!(
            out,
            "| nats-server | {} (JetStream, file storage, fresh per scenario) |",
            m.nats_version
        );
        let _ = writeln!(out, "| Rust | {} (release profile) |", m.rustc);
        let _ = writeln!(out, "| JetStream store, runs 1-3 | {} |", m.store);
        let _ = writeln!(out, "| Bench runtime | {:.0} s |", self.runtime_seconds);
        let _ = writeln!(
            out,
            "\nnats-server, the pipeline process and the bench process (publisher and receiver) all share \
             these {cores} cores; the numbers are what the whole chain does on this machine, not the \
             pipeline alone.\n"
        );

        let _ = writeln!(out, "## Summary\n");
        let _ = writeln!(
            out,
            "| Scenario | Result | Target | Met | CPU taken by other processes meanwhile |\n|---|---|---|---|---|"
        );
        let others = |info: &RunInfo| format!("{:.2} of {cores} cores", info.cpu.others);
        match &self.throughput {
            Ok(t) => {
                let _ = writeln!(
                    out,
                    "| 1. Throughput, 100 endpoints | {} deliveries/s | >= {} deliveries/s | {} | {} |",
                    thousands(t.median),
                    thousands(TARGET_THROUGHPUT),
                    met(t.median >= TARGET_THROUGHPUT),
                    others(&t.info)
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| 1. Throughput | {} | >= 5,000 deliveries/s | {} | |",
                    failure(e),
                    failure_met(e)
                );
            }
        }
        match &self.latency {
            Ok(l) => {
                let _ = writeln!(
                    out,
                    "| 2. Latency p99 at {} events/s | {:.1} ms (p50 {:.1} ms) | <= {TARGET_P99_MS:.0} ms | {} | {} |",
                    thousands(l.rate as f64),
                    l.p99,
                    l.p50,
                    met(l.p99 <= TARGET_P99_MS && l.all_delivered()),
                    others(&l.info)
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| 2. Latency | {} | p99 <= 25 ms | {} | |",
                    failure(e),
                    failure_met(e)
                );
            }
        }
        match (&self.hang, &self.latency) {
            (Ok(h), Ok(l)) => {
                let ratio = h.p99 / l.p99;
                let _ = writeln!(
                    out,
                    "| 3. Others' p99 with a hanging endpoint | {:.1} ms, {:+.0}% vs run 2 | <= +{:.0}% | {} | {} |",
                    h.p99,
                    (ratio - 1.0) * 100.0,
                    (TARGET_HANG_RATIO - 1.0) * 100.0,
                    met(ratio <= TARGET_HANG_RATIO && h.all_delivered()),
                    others(&h.info)
                );
            }
            (Err(e), _) | (_, Err(e)) => {
                let _ = writeln!(
                    out,
                    "| 3. Hanging endpoint | {} | <= +25% | {} | |",
                    failure(e),
                    failure_met(e)
                );
            }
        }
        if let Ok(t) = &self.throughput_tmpfs {
            let _ = writeln!(
                out,
                "| 1b. Throughput, JetStream store on tmpfs | {} deliveries/s | (reference) | | {} |",
                thousands(t.median),
                others(&t.info)
            );
        }
        if let Ok(l) = &self.latency_tmpfs {
            let _ = writeln!(
                out,
                "| 2b. Latency p99, JetStream store on tmpfs | {:.1} ms (p50 {:.1} ms) | (reference) | | {} |",
                l.p99,
                l.p50,
                others(&l.info)
            );
        }
        if let (Ok(h), Ok(l)) = (&self.hang_tmpfs, &self.latency_tmpfs) {
            let _ = writeln!(
                out,
                "| 3b. Others' p99 with a hanging endpoint, store on tmpfs | {:.1} ms, {:+.0}% vs 2b | (reference) | | {} |",
                h.p99,
                (h.p99 / l.p99 - 1.0) * 100.0,
                others(&h.info)
            );
        }
        match (&self.ceiling, &self.throughput) {
            (Ok(c), Ok(t)) => {
                let _ = writeln!(
                    out,
                    "| 4. Receiver ceiling ({}) | {} requests/s; pipeline = {:.1}% of it | (reference) | | |",
                    c.tool,
                    thousands(c.median),
                    100.0 * t.median / c.median
                );
            }
            (Ok(c), Err(_)) => {
                let _ = writeln!(
                    out,
                    "| 4. Receiver ceiling ({}) | {} requests/s | (reference) | | |",
                    c.tool,
                    thousands(c.median)
                );
            }
            (Err(e), _) => {
                let _ = writeln!(
                    out,
                    "| 4. Receiver ceiling | {} | (reference) | | |",
                    failure(e)
                );
            }
        }

        let _ = writeln!(
            out,
            "\nFurther down, each section written by its own command (which replaces only that section): \
             *Soak* (`make soak`), *Scale-out* (`make bench-scaleout`), *Payload filters* and *Routes at \
             10,000 endpoints* (`make bench-routes`), *Controller* (`make bench`) and *Reliability under \
             faults* (`make chaos`)."
        );
        let _ = writeln!(out, "\n## 1. Throughput\n");
        let _ = writeln!(
            out,
            "100 endpoints, one subscription each; events round-robin over them; the publisher keeps up to \
             1,024 publishes awaiting their JetStream ack and stops publishing while more than 20,000 events \
             are published but not yet delivered (so it runs exactly as fast as the pipeline absorbs).\n"
        );
        match &self.throughput {
            Ok(t) => throughput_table(&mut out, t, cores),
            Err(e) => {
                let _ = writeln!(out, "Failed: {e}");
            }
        }
        let _ = writeln!(
            out,
            "\n## 1b. Throughput, JetStream store on tmpfs (reference)\n"
        );
        let _ = writeln!(out, "{TMPFS_INTRO}\n");
        match &self.throughput_tmpfs {
            Ok(t) => throughput_table(&mut out, t, cores),
            Err(e) => {
                let _ = writeln!(out, "Not run: {e}");
            }
        }

        let _ = writeln!(out, "\n## 2. Latency at a fixed rate\n");
        let _ = writeln!(
            out,
            "The same 100 endpoints; a paced publisher at a fixed rate; each payload carries its publish \
             time and the receiver measures publish -> receipt (same process, monotonic clock).\n"
        );
        match &self.latency {
            Ok(l) => latency_table(&mut out, l, None, cores),
            Err(e) => {
                let _ = writeln!(out, "Failed: {e}");
            }
        }
        let _ = writeln!(
            out,
            "\n## 2b. Latency, JetStream store on tmpfs (reference)\n"
        );
        let _ = writeln!(out, "{TMPFS_INTRO}\n");
        match &self.latency_tmpfs {
            Ok(l) => latency_table(&mut out, l, None, cores),
            Err(e) => {
                let _ = writeln!(out, "Not run: {e}");
            }
        }

        let _ = writeln!(out, "\n## 3. Latency with a hanging endpoint\n");
        let _ = writeln!(
            out,
            "As run 2, plus one extra endpoint (`/hang`, timeout 2s, maxInFlight 50, 3 attempts) \
             subscribed to 10% of the event types; the receiver never answers it. Latencies are those \
             of the 100 healthy endpoints.\n"
        );
        match &self.hang {
            Ok(l) => latency_table(&mut out, l, self.latency.as_ref().ok(), cores),
            Err(e) => {
                let _ = writeln!(out, "Failed: {e}");
            }
        }
        let _ = writeln!(
            out,
            "\n## 3b. Hanging endpoint, JetStream store on tmpfs (reference)\n"
        );
        let _ = writeln!(out, "{TMPFS_INTRO} Compared with run 2b.\n");
        match &self.hang_tmpfs {
            Ok(l) => latency_table(&mut out, l, self.latency_tmpfs.as_ref().ok(), cores),
            Err(e) => {
                let _ = writeln!(out, "Not run: {e}");
            }
        }

        let _ = writeln!(out, "\n## 4. Receiver ceiling\n");
        let _ = writeln!(
            out,
            "The same in-process receiver (same handler: JSON parse, counters), loaded directly with small \
             POSTs over keep-alive connections: what the local HTTP hop alone can do on this machine.\n"
        );
        match &self.ceiling {
            Ok(c) => {
                let _ = writeln!(out, "| Metric | Value |\n|---|---|");
                let _ = writeln!(
                    out,
                    "| Load generator | {}, {} connections, {} s |",
                    c.tool, c.connections, c.seconds
                );
                let _ = writeln!(
                    out,
                    "| **Requests/s** (median of per-second receiver counts) | **{}** |",
                    thousands(c.median)
                );
                if let Some(rps) = c.tool_rps {
                    let _ = writeln!(
                        out,
                        "| Requests/s as the load generator reports it | {} |",
                        thousands(rps)
                    );
                }
                if let Ok(t) = &self.throughput {
                    let _ = writeln!(
                        out,
                        "| Pipeline / ceiling | {:.1}% |",
                        100.0 * t.median / c.median
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(out, "Failed: {e}");
            }
        }

        let _ = writeln!(out, "\n## Notes\n");
        for note in self.notes() {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    /// One honest sentence per missed target, plus what the run itself says about the cause.
    fn notes(&self) -> Vec<String> {
        let cores = self.machine.cores as f64;
        let saturated = |info: &RunInfo| {
            let c = info.cpu;
            let total = c.ours() + c.others;
            let split = format!(
                "{total:.2} of {cores:.0} cores busy: nats-server {:.2}, pipeline {:.2}, bench {:.2}, other processes {:.2}",
                c.nats, c.pipeline, c.bench, c.others
            );
            let mut text = if total >= 0.85 * cores {
                format!(" The machine was CPU-bound during the run ({split}).")
            } else {
                format!(
                    " CPU was not the limit ({split}), which points at waiting (I/O, locks, round trips) rather than CPU work."
                )
            };
            if c.others >= 0.25 * cores {
                text.push_str(" Other work on the machine took a large share of the CPU, so this number understates the pipeline.");
            }
            text
        };
        let mut notes = Vec::new();
        if let Ok(t) = &self.throughput
            && t.median < TARGET_THROUGHPUT
        {
            let mut note = format!(
                "Throughput target missed: {} deliveries/s against >= {}.",
                thousands(t.median),
                thousands(TARGET_THROUGHPUT)
            );
            note.push_str(&saturated(&t.info));
            if let Ok(c) = &self.ceiling {
                let _ = write!(
                    note,
                    " The receiver alone takes {} requests/s, so the HTTP hop is not what limits it.",
                    thousands(c.median)
                );
            }
            if let Some(cost) = t.cpu_cost() {
                let _ = write!(
                    note,
                    " Each delivery cost {:.0} µs of CPU in all (nats-server {:.0}, pipeline {:.0}, bench {:.0}), so with \
                     all {} cores to itself this chain would do roughly {} deliveries/s (linear estimate){}.",
                    cost.total(),
                    cost.nats,
                    cost.pipeline,
                    cost.bench,
                    self.machine.cores,
                    thousands(cost.capacity(self.machine.cores)),
                    if cost.capacity(self.machine.cores) >= TARGET_THROUGHPUT {
                        "; the CPU cost alone would allow the target"
                    } else {
                        "; short of the target even with no other load"
                    }
                );
            }
            note.push_str(
                " For every delivery JetStream stores three messages (event, job, attempt record), each \
                 consumed and acknowledged, plus the counters' key-value updates, all on the same cores.",
            );
            if let Ok(fast) = &self.throughput_tmpfs {
                let nats = |t: &Throughput| t.cpu_cost().map_or(0.0, |c| c.nats);
                let _ = write!(
                    note,
                    " With the JetStream store on tmpfs the same run did {} deliveries/s (nats-server {:.0} µs of CPU \
                     per delivery instead of {:.0}){}.",
                    thousands(fast.median),
                    nats(fast),
                    nats(t),
                    if fast.median >= 1.2 * t.median {
                        ", so the filesystem under JetStream accounts for much of the gap"
                    } else {
                        ", so the filesystem is not the main limit"
                    }
                );
            }
            notes.push(note);
        }
        if let Ok(l) = &self.latency {
            if l.p99 > TARGET_P99_MS {
                notes.push(format!(
                    "Latency target missed: p99 {:.1} ms at {} events/s against <= {TARGET_P99_MS:.0} ms.{}{}",
                    l.p99,
                    thousands(l.rate as f64),
                    steady_note(l),
                    saturated(&l.info)
                ));
                if let Ok(fast) = &self.latency_tmpfs {
                    notes.push(format!(
                        "With the JetStream store on tmpfs, run 2 had p99 {:.1} ms (p50 {:.1} ms){}.",
                        fast.p99,
                        fast.p50,
                        if fast.p99 <= TARGET_P99_MS {
                            ": on this machine the filesystem under nats-server is what pushes the tail over the target"
                        } else {
                            ": the tail stays above the target without the disk too"
                        }
                    ));
                }
            }
            if !l.all_delivered() {
                notes.push(format!(
                    "Run 2 did not deliver every event: {} of {} arrived within the drain time.",
                    l.delivered, l.published
                ));
            }
        }
        if let (Ok(h), Ok(l)) = (&self.hang, &self.latency) {
            let ratio = h.p99 / l.p99;
            if ratio > TARGET_HANG_RATIO {
                notes.push(format!(
                    "Isolation target missed: with a hanging endpoint the others' p99 went from {:.1} ms to {:.1} ms (x{ratio:.2}, target <= x{TARGET_HANG_RATIO:.2}).{}{}{}",
                    l.p99,
                    h.p99,
                    match (h.steady_p99, l.steady_p99) {
                        (Some(a), Some(b)) => format!(
                            " Counting only events sent after the first 10 s: {b:.1} -> {a:.1} ms (x{:.2}).",
                            a / b
                        ),
                        _ => String::new(),
                    },
                    saturated(&h.info),
                    if h.p50 / l.p50 > TARGET_HANG_RATIO {
                        format!(
                            " The median moved too (p50 {:.1} -> {:.1} ms): everything slowed down, not only the tail. \
                             nats-server, which serves every endpoint's consumer, used {:.2} cores in run 3 against {:.2} in run 2; \
                             other processes {:.2} against {:.2}.",
                            l.p50, h.p50, h.info.cpu.nats, l.info.cpu.nats, h.info.cpu.others, l.info.cpu.others
                        )
                    } else {
                        String::new()
                    }
                ));
                if let (Ok(h2), Ok(l2)) = (&self.hang_tmpfs, &self.latency_tmpfs) {
                    notes.push(format!(
                        "With the JetStream store on tmpfs (3b against 2b) the others' p99 went from {:.1} ms to {:.1} ms (x{:.2}){}.",
                        l2.p99,
                        h2.p99,
                        h2.p99 / l2.p99,
                        if h2.p99 / l2.p99 <= TARGET_HANG_RATIO {
                            ", within the isolation target: the hanging endpoint hurts the others through the filesystem under nats-server"
                        } else {
                            ", so the effect is there without the disk too"
                        }
                    ));
                }
            }
            if !h.all_delivered() {
                notes.push(format!(
                    "Run 3 did not deliver every event to the healthy endpoints: {} of {} arrived within the drain time.",
                    h.delivered, h.published
                ));
            }
        }
        for (name, result) in [
            ("throughput", self.throughput.as_ref().map(|t| &t.info)),
            ("latency", self.latency.as_ref().map(|l| &l.info)),
            ("hang", self.hang.as_ref().map(|l| &l.info)),
        ] {
            if let Ok(info) = result
                && (info.log.errors > 0 || info.signatures_bad > 0)
            {
                notes.push(format!(
                    "The {name} run had {} pipeline log errors and {} bad signatures; see the log copy {}.",
                    info.log.errors,
                    info.signatures_bad,
                    info.log_copy.as_deref().unwrap_or("(none)")
                ));
            }
        }
        if notes.is_empty() {
            notes.push("Every target was met in this run.".into());
        }
        let kernel = [
            self.throughput.as_ref().ok().map(|t| t.info.cpu),
            self.latency.as_ref().ok().map(|l| l.info.cpu),
            self.hang.as_ref().ok().map(|l| l.info.cpu),
        ]
        .into_iter()
        .flatten()
        .map(|c| c.nats_kernel)
        .fold(0.0, f64::max);
        if kernel > 0.4 {
            notes.push(format!(
                "nats-server spent up to {:.0}% of its CPU in the kernel in runs 1-3, mostly file storage: \
                 events, jobs and attempt records are stored on disk, and the router and stats consumers persist \
                 their state. (The per-endpoint delivery consumers keep theirs in memory: persisting one state \
                 file per endpoint after every ack used to be most of nats-server's CPU; see docs/architecture.md.) \
                 Runs 1b-3b on tmpfs show how much the filesystem adds.",
                kernel * 100.0
            ));
        }
        notes.push(
            "Run-to-run variation on a shared 2-core machine is large (other work on the machine competes for the \
             same cores); compare runs only with the load average in mind."
                .into(),
        );
        notes.push(format!(
            "Pipeline and nats-server logs of the last run are kept under `{}/pipeline-bench/`.",
            relative_tmpdir()
        ));
        notes
    }
}

/// How the p99 looks once the first seconds after start-up are left out.
fn steady_note(l: &Latency) -> String {
    match l.steady_p99 {
        Some(steady) => format!(
            " Counting only events sent after the first 10 s, p99 was {steady:.1} ms ({}).",
            if steady <= TARGET_P99_MS {
                "within the target"
            } else {
                "still above the target"
            }
        ),
        None => String::new(),
    }
}

fn relative_tmpdir() -> String {
    let tmp = env!("CARGO_TARGET_TMPDIR");
    tmp.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .map(|p| p.trim_start_matches('/').to_owned())
        .unwrap_or_else(|| tmp.to_owned())
}
