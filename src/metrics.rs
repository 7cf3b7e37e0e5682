//! Prometheus metrics (OpenMetrics text on `/metrics`).
//!
//! Label cardinality is bounded: above `max_endpoint_labels` endpoints the `endpoint` label is
//! recorded as `_overflow`, so a tenant with thousands of endpoints cannot blow up the series count;
//! the `subscription` label follows the same rule over routed subscriptions.

use std::sync::atomic::{AtomicBool, Ordering};

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
    pub events_filtered: Family<SubscriptionLabels, Counter>,
    endpoint_labels: AtomicBool,
    subscription_labels: AtomicBool,
    max_endpoint_labels: usize,
}

pub const OVERFLOW_ENDPOINT: &str = "_overflow";

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

impl Metrics {
    pub fn new(max_endpoint_labels: usize) -> Self {
        let mut registry = Registry::default();
        let events_received = Family::default();
        let events_unrouted = Family::default();
        let delivery_attempts = Family::default();
        let dead_lettered = Family::default();
        let delivery_duration: HistogramFamily = Family::new_with_constructor(seconds_histogram);
        let delivery_latency: HistogramFamily = Family::new_with_constructor(seconds_histogram);
        let pending_deliveries = Family::default();
        let endpoints = Family::default();
        let events_filtered = Family::default();
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
            "webhook_events_filtered",
            "Events a subscription's payload filter turned down",
            events_filtered.clone(),
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
            events_filtered,
            endpoint_labels: AtomicBool::new(true),
            subscription_labels: AtomicBool::new(true),
            max_endpoint_labels,
        }
    }

    /// Called when the number of served endpoints changes.
    pub fn set_endpoint_count(&self, count: usize) {
        self.endpoint_labels
            .store(count <= self.max_endpoint_labels, Ordering::Relaxed);
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

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(1000)
    }
}
