//! The soak run as a section of BENCHMARKS.md.

use std::{fmt::Write as _, time::Duration};

use crate::{
    Config, Soak,
    parts::{
        machine::{Machine, load_average},
        numbers::{mib, thousands},
    },
};

/// RSS may grow by less than this share between the end of the first slice and the end.
pub const RSS_GROWTH_TARGET: f64 = 0.10;

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn growth_text((start, end, growth): (u64, u64, f64)) -> String {
    format!("{} -> {} ({:+.1}%)", mib(start), mib(end), growth * 100.0)
}

fn slice_label(config: &Config, i: usize) -> String {
    let from = i as u64 * config.slice_seconds;
    let to = (from + config.slice_seconds).min(config.seconds);
    if config.slice_seconds == 60 {
        format!("minute {}", i + 1)
    } else {
        format!("{from}-{to} s")
    }
}

/// The body of the `soak` section.
pub fn section(config: &Config, soak: &Soak, machine: &Machine, runtime: Duration) -> String {
    let mut out = String::new();
    let title = if config.full() {
        format!(
            "## Soak: {} minutes at {} events/s",
            config.seconds / 60,
            thousands(config.rate as f64)
        )
    } else {
        format!(
            "## Soak (short run: {} s at {} events/s, not the 10-minute soak)",
            config.seconds,
            thousands(config.rate as f64)
        )
    };
    let _ = writeln!(out, "{title}\n");
    if !config.full() {
        let _ = writeln!(
            out,
            "**Short run**, a check of the bench itself: memory growth over so short a time says little. \
             The full soak is `make soak` (600 s at 1,000 events/s) on a quiet machine.\n"
        );
    }
    let _ = writeln!(
        out,
        "Command: `{}` (runs `cargo bench --bench soak`), {}; {:.0} s in all. {}\n",
        config.command(),
        machine.date,
        runtime.as_secs_f64(),
        machine.note(&load_average())
    );
    let unit = if config.slice_seconds == 60 {
        "minute".to_owned()
    } else {
        format!("{} s", config.slice_seconds)
    };
    let _ = writeln!(
        out,
        "A fresh nats-server (JetStream, file storage), {} `webhook-operator local` process{} and \
         100 endpoints of one tenant on the bench's HTTP receiver, warmed up with one event per endpoint. The \
         publisher is paced and open loop: it sends on a fixed schedule whatever the pipeline does (JetStream \
         publish, acks awaited in the background, at most 1,024 unacknowledged) and counts the seconds in which \
         it fell more than 50 ms behind. Each payload carries its publish time; the receiver (same process, \
         monotonic clock) records publish -> receipt for every event, reported by {unit} of send time. RSS is \
         `VmRSS` of the processes at the end of every {unit}; growth is from the end of the first {unit} \
         (after warm-up) to the end of publishing. The target is the pipeline's; nats-server holds the streams \
         (events, jobs and attempt records, all kept for days) and caches their recent blocks in memory, so its \
         RSS is shown for reference.\n",
        config.processes,
        if config.processes == 1 {
            ""
        } else {
            "es sharing the work"
        },
    );

    let pipeline = soak.pipeline_growth();
    let lost = soak.lost();
    let _ = writeln!(out, "| target | result | met |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| Pipeline RSS growth < {:.0}% | {} | {} |",
        RSS_GROWTH_TARGET * 100.0,
        pipeline.map_or("not measured".into(), growth_text),
        met(pipeline.is_some_and(|(_, _, g)| g < RSS_GROWTH_TARGET))
    );
    let _ = writeln!(
        out,
        "| No event lost | {} lost of {} acknowledged | {} |",
        thousands(lost as f64),
        thousands(soak.acked as f64),
        met(lost == 0 && soak.acked > 0)
    );

    let info = &soak.info;
    let _ = writeln!(out, "\n| measure | value |\n|---|---|");
    let _ = writeln!(out, "| Publisher schedule | {} |", soak.pacing.describe());
    let _ = writeln!(
        out,
        "| Events acknowledged by JetStream | {}{} |",
        thousands(soak.acked as f64),
        if info.publish_failed > 0 {
            format!(
                "; {} publishes failed ({})",
                info.publish_failed,
                info.publish_error
                    .as_deref()
                    .unwrap_or("")
                    .replace('|', "/")
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "| Delivered (distinct events) / duplicates / lost | {} / {} / {}; {} |",
        thousands(soak.delivered as f64),
        soak.duplicates,
        lost,
        match soak.drain_seconds {
            Some(s) => format!("all in {s:.1} s after publishing stopped"),
            None => "**not all delivered** within 60 s after publishing stopped".into(),
        }
    );
    let _ = writeln!(
        out,
        "| Latency, whole run: p50 / p99 / max | {:.2} / {:.2} / {:.1} ms |",
        soak.p50, soak.p99, soak.max
    );
    let _ = writeln!(
        out,
        "| nats-server RSS, end of first {unit} -> end (reference) | {} |",
        soak.nats_growth()
            .map_or("not measured".into(), growth_text)
    );
    let _ = writeln!(
        out,
        "| RSS right after warm-up | pipeline {}, nats-server {} |",
        mib(soak.memory_before.pipelines),
        mib(soak.memory_before.nats)
    );
    let _ = writeln!(
        out,
        "| CPU used, cores (whole run) | {} |",
        info.cpu.describe(machine.cores)
    );
    let (checked, bad) = (info.signatures_checked, info.signatures_bad);
    let _ = writeln!(
        out,
        "| Signatures verified (HMAC) | {checked} checked, {bad} bad |"
    );
    let _ = writeln!(out, "| Pipeline log | {} |", info.log.describe());

    let _ = writeln!(
        out,
        "\n| {unit} of send time | events received | p50 ms | p99 ms | max ms | pipeline RSS at its end | nats-server RSS at its end |\n|---|---|---|---|---|---|---|"
    );
    for (i, slice) in soak.slices.iter().enumerate() {
        let memory = soak.memory.get(i).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.2} | {:.1} | {} | {} |",
            slice_label(config, i),
            thousands(slice.count as f64),
            slice.p50_ms,
            slice.p99_ms,
            slice.max_ms,
            mib(memory.pipelines),
            mib(memory.nats)
        );
    }
    out
}
