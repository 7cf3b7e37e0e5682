//! The machine a bench ran on, as its reports describe it.

use super::procs::command_output;

pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub date: String,
    pub load: String,
    pub nats_version: String,
    pub rustc: String,
    /// Where JetStream stores live by default (`TMPDIR`), and its filesystem.
    pub store: String,
}

impl Machine {
    pub fn detect(nats_bin: &std::path::Path) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            date: jiff::Timestamp::now()
                .strftime("%Y-%m-%d %H:%M UTC")
                .to_string(),
            load: load_average(),
            nats_version: command_output(nats_bin, &["--version"])
                .map(|v| v.trim_start_matches("nats-server:").trim().to_owned())
                .unwrap_or_else(|| "unknown".into()),
            rustc: command_output("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
            store: filesystem_of(&std::env::temp_dir()),
        }
    }

    /// One paragraph for a section of BENCHMARKS.md; `load_now` is the load average at the end.
    pub fn note(&self, load_now: &str) -> String {
        format!(
            "{} cores ({}), {:.1} GiB, kernel {}; load average at start {}, at the end {}; \
             nats-server {} (JetStream, file storage in {}); {}, {}. Every process of the chain \
             (nats-server, the pipeline, the bench's publisher and receiver) shares these cores.",
            self.cores,
            self.cpu,
            self.memory_gib,
            self.kernel,
            self.load,
            load_now,
            self.nats_version,
            self.store,
            self.rustc,
            build_profile()
        )
    }
}

/// How the bench, and so the pipeline binary cargo built with it, was compiled.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "**debug build** (not representative)"
    } else {
        "release build"
    }
}

/// The 1-, 5- and 15-minute load averages, space-separated.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `dir (fstype on device, options)` of the mount holding `dir`, from /proc/mounts.
fn filesystem_of(dir: &std::path::Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 4 && dir.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} on {} ({})", f[2], f[0], f[3])))
        })
        .max_by_key(|(len, _)| *len);
    match best {
        Some((_, fs)) => format!("{} ({fs}) — `TMPDIR` picks another", dir.display()),
        None => dir.display().to_string(),
    }
}
