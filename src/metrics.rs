//! Prometheus metrics on `/metrics`: OpenMetrics text, or the Prometheus text format 0.0.4 for
//! clients that ask for `text/plain` (such as `promtool check metrics`).
//!
//! Label cardinality is bounded: above `max_endpoint_labels` endpoints (in one process) the
//! `endpoint` label is recorded as `_overflow` and the per-endpoint series are dropped, so a
//! tenant with thousands of endpoints cannot blow up the series count. Series of an endpoint
//! that goes away are dropped with it.
//! The `subscription` label follows the same rule over routed subscriptions.

use std::{
    collections::HashSet,
    sync::atomic::{AtomicBool, Ordering},
};

use crate::dataplane::attempt_log::AttemptResult;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub tenant: String,
    pub endpoint: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabels {
    pub tenant: String,
    pub subscription: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub tenant: String,
    pub endpoint: String,
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthLabels {
    pub health: &'static str,
}

type HistogramFamily = Family<TenantLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub events_received: Family<TenantLabels, Counter>,
    pub events_unrouted: Family<TenantLabels, Counter>,
    pub delivery_attempts: Family<AttemptLabels, Counter>,
    pub dead_lettered: Family<EndpointLabels, Counter>,
    pub delivery_duration: HistogramFamily,
    pub delivery_latency: HistogramFamily,
    pub pending_deliveries: Family<TenantLabels, Gauge>,
    pub endpoints: Family<HealthLabels, Gauge>,
    pub circuit_open: Family<TenantLabels, Gauge>,
    pub events_filtered: Family<SubscriptionLabels, Counter>,
    pub fifo_held_back: Family<EndpointLabels, Gauge>,
    endpoint_labels: AtomicBool,
    subscription_labels: AtomicBool,
    max_endpoint_labels: usize,
}

pub const OVERFLOW_ENDPOINT: &str = "_overflow";

/// One HTTP attempt: 1 ms .. ~65 s (timeouts are at most minutes).
fn duration_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

/// Published to delivered, retries included: 10 ms .. ~1.9 days.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.01, 2.0, 25,
    ))
}

/// Content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text exposition format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Metrics {
    pub fn new(max_endpoint_labels: usize) -> Self {
        let mut registry = Registry::default();
        let events_received = Family::default();
        let events_unrouted = Family::default();
        let delivery_attempts = Family::default();
        let dead_lettered = Family::default();
        let delivery_duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let delivery_latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let pending_deliveries = Family::default();
        let endpoints = Family::default();
        let circuit_open = Family::default();
        let events_filtered = Family::default();
        let fifo_held_back = Family::default();
        registry.register(
            "webhook_events_received",
            "Events read from the events stream",
            events_received.clone(),
        );
        registry.register(
            "webhook_events_unrouted",
            "Events that matched no subscription",
            events_unrouted.clone(),
        );
        registry.register(
            "webhook_delivery_attempts",
            "HTTP delivery attempts by result",
            delivery_attempts.clone(),
        );
        registry.register(
            "webhook_deliveries_dead_lettered",
            "Deliveries given up on",
            dead_lettered.clone(),
        );
        registry.register_with_unit(
            "webhook_delivery_duration",
            "Duration of one HTTP delivery attempt",
            Unit::Seconds,
            delivery_duration.clone(),
        );
        registry.register_with_unit(
            "webhook_delivery_latency",
            "Time from event publication to successful delivery",
            Unit::Seconds,
            delivery_latency.clone(),
        );
        registry.register(
            "webhook_pending_deliveries",
            "Delivery jobs queued or awaiting retry",
            pending_deliveries.clone(),
        );
        registry.register(
            "webhook_endpoints",
            "Endpoints by health",
            endpoints.clone(),
        );
        registry.register(
            "webhook_circuit_open",
            "Endpoints whose circuit breaker is open in this process (backlog held back, probing)",
            circuit_open.clone(),
        );
        registry.register(
            "webhook_events_filtered",
            "Events a subscription's payload filter turned down",
            events_filtered.clone(),
        );
        registry.register(
            "webhook_fifo_held_back",
            "FIFO endpoints: events waiting behind a failing one, as seen by the process delivering them",
            fifo_held_back.clone(),
        );
        Self {
            registry,
            events_received,
            events_unrouted,
            delivery_attempts,
            dead_lettered,
            delivery_duration,
            delivery_latency,
            pending_deliveries,
            endpoints,
            circuit_open,
            events_filtered,
            fifo_held_back,
            endpoint_labels: AtomicBool::new(true),
            subscription_labels: AtomicBool::new(true),
            max_endpoint_labels,
        }
    }

    /// Called when the number of served endpoints changes. Crossing the limit upwards drops the
    /// per-endpoint series (their counts continue under `_overflow`: a counter reset to
    /// Prometheus), so the series count stays bounded.
    pub fn set_endpoint_count(&self, count: usize) {
        let labelled = count <= self.max_endpoint_labels;
        let was = self.endpoint_labels.swap(labelled, Ordering::Relaxed);
        if was && !labelled {
            tracing::info!(
                endpoints = count,
                limit = self.max_endpoint_labels,
                "more endpoints than --metrics-max-endpoints: metrics record endpoint=\"{OVERFLOW_ENDPOINT}\""
            );
            self.delivery_attempts.clear();
            self.dead_lettered.clear();
            self.fifo_held_back.clear();
        }
    }

    /// Drops the series of an endpoint that is no longer served.
    pub fn forget_endpoint(&self, tenant: &str, name: &str) {
        if !self.endpoint_labels.load(Ordering::Relaxed) {
            return;
        }
        for result in AttemptResult::ALL {
            self.delivery_attempts.remove(&AttemptLabels {
                tenant: tenant.to_owned(),
                endpoint: name.to_owned(),
                result: result.as_label(),
            });
        }
        let labels = EndpointLabels {
            tenant: tenant.to_owned(),
            endpoint: name.to_owned(),
        };
        self.dead_lettered.remove(&labels);
        self.fifo_held_back.remove(&labels);
    }

    /// Sets an endpoint's `webhook_fifo_held_back`; above the label cap there is no such
    /// series (a gauge cannot be folded into `_overflow`).
    pub fn set_held_back(&self, tenant: &str, name: &str, held_back: Option<u64>) {
        let labels = EndpointLabels {
            tenant: tenant.to_owned(),
            endpoint: name.to_owned(),
        };
        match held_back {
            Some(count) if self.endpoint_labels.load(Ordering::Relaxed) => {
                self.fifo_held_back
                    .get_or_create(&labels)
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
            _ => {
                self.fifo_held_back.remove(&labels);
            }
        }
    }

    /// The `endpoint` label value to record, honouring the cardinality cap.
    pub fn endpoint_label(&self, name: &str) -> String {
        if self.endpoint_labels.load(Ordering::Relaxed) {
            name.to_owned()
        } else {
            OVERFLOW_ENDPOINT.to_owned()
        }
    }

    /// Called when the number of routed subscriptions changes; the same cap applies.
    pub fn set_subscription_count(&self, count: usize) {
        self.subscription_labels
            .store(count <= self.max_endpoint_labels, Ordering::Relaxed);
    }

    /// The `subscription` label value to record, honouring the cardinality cap.
    pub fn subscription_label(&self, name: &str) -> String {
        if self.subscription_labels.load(Ordering::Relaxed) {
            name.to_owned()
        } else {
            OVERFLOW_ENDPOINT.to_owned()
        }
    }

    pub fn tenant(tenant: &str) -> TenantLabels {
        TenantLabels {
            tenant: tenant.to_owned(),
        }
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The exposition a client asked for with `accept`, and its content type: the Prometheus
    /// text format 0.0.4 when it asks for `text/plain` and not for OpenMetrics; OpenMetrics
    /// otherwise (Prometheus itself asks for OpenMetrics first).
    pub fn exposition(
        &self,
        accept: Option<&str>,
    ) -> Result<(&'static str, String), std::fmt::Error> {
        let openmetrics = self.encode()?;
        let accept = accept.unwrap_or_default().to_ascii_lowercase();
        if accept.contains("text/plain") && !accept.contains("application/openmetrics-text") {
            Ok((TEXT_CONTENT_TYPE, openmetrics_to_text(&openmetrics)))
        } else {
            Ok((OPENMETRICS_CONTENT_TYPE, openmetrics))
        }
    }
}

/// Rewrites OpenMetrics text as the Prometheus text format 0.0.4: counter families are named
/// with their `_total` suffix (as their samples are), `# UNIT` and `# EOF` go. Histograms,
/// gauges, samples and label escaping are the same in both.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let comment = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| line.strip_prefix(prefix).map(|rest| (prefix, rest)));
        match comment {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{total} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_names_counters_with_total_and_drops_openmetrics_only_lines() {
        let metrics = Metrics::new(10);
        metrics
            .events_received
            .get_or_create(&Metrics::tenant("acme"))
            .inc();
        metrics
            .delivery_duration
            .get_or_create(&Metrics::tenant("acme"))
            .observe(0.2);
        let (content_type, text) = metrics
            .exposition(Some("text/plain;version=0.0.4"))
            .expect("encode");
        assert_eq!(content_type, TEXT_CONTENT_TYPE);
        assert!(
            text.contains("# TYPE webhook_events_received_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP webhook_events_received_total "),
            "{text}"
        );
        assert!(
            text.contains("webhook_events_received_total{tenant=\"acme\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE webhook_delivery_duration_seconds histogram\n"));
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );

        let (content_type, openmetrics) = metrics
            .exposition(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            ))
            .expect("encode");
        assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
        assert!(openmetrics.contains("# TYPE webhook_events_received counter\n"));
        assert!(openmetrics.ends_with("# EOF\n"));
        assert_eq!(
            metrics.exposition(None).expect("encode").0,
            OPENMETRICS_CONTENT_TYPE
        );
    }

    #[test]
    fn above_the_limit_endpoint_series_fold_into_overflow() {
        let metrics = Metrics::new(2);
        metrics.set_endpoint_count(2);
        let record = |name: &str| {
            metrics
                .delivery_attempts
                .get_or_create(&AttemptLabels {
                    tenant: "acme".into(),
                    endpoint: metrics.endpoint_label(name),
                    result: "success",
                })
                .inc();
        };
        record("a");
        record("b");
        let text = metrics.encode().expect("encode");
        assert!(text.contains("endpoint=\"a\"") && text.contains("endpoint=\"b\""));

        metrics.forget_endpoint("acme", "b");
        assert!(!metrics.encode().expect("encode").contains("endpoint=\"b\""));

        metrics.set_endpoint_count(3);
        record("a");
        record("c");
        let text = metrics.encode().expect("encode");
        assert!(!text.contains("endpoint=\"a\""), "{text}");
        assert!(text.contains(&format!(
            "webhook_delivery_attempts_total{{tenant=\"acme\",endpoint=\"{OVERFLOW_ENDPOINT}\",result=\"success\"}} 2"
        )), "{text}");
    }
}
