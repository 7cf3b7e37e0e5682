//! Order statistics of measured samples, and numbers as the reports print them.

/// Median of sorted values (mean of the middle two for an even count); 0 when empty.
pub fn median(sorted: &[u64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2] as f64,
        n => (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0,
    }
}

/// Median of unsorted measurements (e.g. one rate per run); 0 when empty.
pub fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile (`p` in 0..=1) of sorted values; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Latencies of the events sent in one slice of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Slice {
    /// Events of the slice that were received (first receipts).
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Splits `(seq, latency ns)` samples by send time: event `seq` belongs to slice
/// `seq / per_slice` (a paced publisher sends `per_slice` events per slice). `slices` slices.
pub fn by_send_slice(samples: &[(u64, u64)], per_slice: u64, slices: usize) -> Vec<Slice> {
    let mut buckets = vec![Vec::new(); slices];
    for &(seq, latency) in samples {
        if let Some(bucket) = buckets.get_mut((seq / per_slice.max(1)) as usize) {
            bucket.push(latency);
        }
    }
    buckets
        .into_iter()
        .map(|mut latencies| {
            latencies.sort_unstable();
            let ms = |p: f64| percentile(&latencies, p) as f64 / 1e6;
            Slice {
                count: latencies.len() as u64,
                p50_ms: ms(0.50),
                p99_ms: ms(0.99),
                max_ms: ms(1.0),
            }
        })
        .collect()
}

/// `12345.6` -> `"12,346"`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
