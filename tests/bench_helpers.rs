//! The benchmarks' pure helpers: BENCHMARKS.md sections, order statistics, pacing. The benches
//! run with `harness = false` (no test harness), so their helpers are tested here.

// The reports' formatting and the file writing are left to the benches themselves.
#[allow(dead_code)]
#[path = "../benches/common/numbers.rs"]
mod numbers;
#[allow(dead_code)]
#[path = "../benches/pipeline/pacing.rs"]
mod pacing;
#[allow(dead_code)]
#[path = "../benches/common/sections.rs"]
mod sections;

mod sections_tests {
    use super::sections::*;

    const FILE: &str = "# Benchmarks\n\nintro\n<!-- a:start -->\nold a\n<!-- a:end -->\n\n<!-- b:start -->\nb\n<!-- b:end -->\n";

    #[test]
    fn replaces_only_its_own_section() {
        let updated = replace(FILE, "a", "new a\n");
        assert_eq!(
            updated,
            "# Benchmarks\n\nintro\n<!-- a:start -->\nnew a\n<!-- a:end -->\n\n<!-- b:start -->\nb\n<!-- b:end -->\n"
        );
        assert_eq!(replace(&updated, "a", "new a"), updated, "idempotent");
        let b = replace(FILE, "b", "new b");
        assert!(b.starts_with("# Benchmarks\n\nintro\n<!-- a:start -->\nold a\n<!-- a:end -->\n"));
        assert!(b.ends_with("<!-- b:start -->\nnew b\n<!-- b:end -->\n"));
    }

    #[test]
    fn appends_a_missing_or_unterminated_section() {
        assert_eq!(
            replace("# Benchmarks\n\n", "c", "c"),
            "# Benchmarks\n\n<!-- c:start -->\nc\n<!-- c:end -->\n"
        );
        let broken = "x\n<!-- c:start -->\nhalf\n";
        assert!(replace(broken, "c", "c").starts_with(broken.trim_end()));
        // An end marker before the start marker does not count.
        let reversed = "<!-- c:end -->\n<!-- c:start -->\n";
        assert!(replace(reversed, "c", "c").ends_with("<!-- c:start -->\nc\n<!-- c:end -->\n"));
    }

    #[test]
    fn lists_complete_sections_in_order() {
        assert_eq!(
            marked(FILE),
            [
                "<!-- a:start -->\nold a\n<!-- a:end -->",
                "<!-- b:start -->\nb\n<!-- b:end -->"
            ]
        );
        assert!(marked("<!-- a:start -->\nno end").is_empty());
        assert_eq!(
            marked("<!-- a:start -->x<!-- a:end --><!-- b:start -->"),
            ["<!-- a:start -->x<!-- a:end -->"]
        );
    }
}

mod numbers_tests {
    use super::numbers::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[1, 2, 9]), 2.0);
        assert_eq!(median(&[1, 2, 4, 9]), 3.0);
        assert_eq!(median_f64(vec![9.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_f64(vec![4.0, 1.0, 9.0, 2.0]), 3.0);
        assert_eq!(median_f64(Vec::new()), 0.0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&values, 0.0), 1);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.99), 0);
    }

    #[test]
    fn slices_follow_send_order_not_receipt_order() {
        // 10 events per slice; slice 1 received first, one event of slice 2 lost.
        let mut samples: Vec<(u64, u64)> = (10..20).map(|seq| (seq, 2_000_000)).collect();
        samples.extend((0..10).map(|seq| (seq, 1_000_000 * (seq + 1))));
        samples.extend((20..29).map(|seq| (seq, 500_000)));
        samples.push((99, 1)); // beyond the last slice: ignored
        let slices = by_send_slice(&samples, 10, 3);
        assert_eq!(
            slices[0],
            Slice {
                count: 10,
                p50_ms: 5.0,
                p99_ms: 10.0,
                max_ms: 10.0
            }
        );
        assert_eq!(slices[1].count, 10);
        assert_eq!(slices[1].p99_ms, 2.0);
        assert_eq!(slices[2].count, 9);
        assert_eq!(slices[2].max_ms, 0.5);
        assert_eq!(by_send_slice(&[], 10, 2), [Slice::default(); 2]);
    }

    #[test]
    fn formats() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(-5.0), "0");
        assert_eq!(mib(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}

mod pacing_tests {
    use std::time::Duration;

    use super::pacing::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn sends_what_is_due_and_no_more() {
        let mut pacer = Pacer::new(1_000, 2);
        assert_eq!(pacer.due(MS(0)), 0);
        assert_eq!(pacer.due(MS(1)), 1);
        assert_eq!(pacer.due(MS(1)), 0, "nothing new in the same millisecond");
        assert_eq!(pacer.due(MS(3)), 2);
        assert_eq!(pacer.due(MS(2_500)), 1_997, "never past the end");
        assert!(pacer.finished());
        assert_eq!(pacer.due(MS(3_000)), 0);
        let pacing = pacer.finish(2.0);
        assert_eq!((pacing.scheduled, pacing.sent), (2_000, 2_000));
    }

    #[test]
    fn counts_the_seconds_it_fell_behind() {
        let mut pacer = Pacer::new(1_000, 10);
        pacer.due(MS(1_000));
        assert_eq!(pacer.finish(1.0).late_seconds, 1, "a whole second behind");
        pacer.due(MS(1_020));
        pacer.due(MS(1_100));
        pacer.due(MS(1_200));
        pacer.due(MS(2_500));
        let pacing = pacer.finish(2.5);
        assert_eq!(
            pacing.late_seconds, 2,
            "second 1 (late three times) and second 2"
        );
        assert_eq!(pacing.max_lag, MS(1_300));
        assert!(!pacing.held());
    }

    #[test]
    fn a_steady_loop_holds_the_schedule() {
        let mut pacer = Pacer::new(1_000, 1);
        let mut sent = 0;
        for ms in 0..=1_000 {
            sent += pacer.due(MS(ms));
        }
        let pacing = pacer.finish(1.0);
        assert_eq!(sent, 1_000);
        assert!(pacing.held(), "{pacing:?}");
        assert_eq!(pacing.max_lag, MS(1));
    }
}
