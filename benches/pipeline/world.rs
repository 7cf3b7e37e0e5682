//! What the pipeline benches deliver to: one tenant of 100 endpoints on the in-process receiver,
//! its manifests, and the clock publisher and receiver share.

use std::{sync::OnceLock, time::Instant};

pub const TENANT: &str = "bench";
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const ENDPOINTS: usize = 100;
/// Share of the event types the hanging endpoint subscribes to (first N of 100 endpoints' types).
pub const HANG_SUBSCRIBED: usize = 10;

/// Nanoseconds on a monotonic clock shared by publisher and receiver (same process).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The event type endpoint `i` subscribes to (`bench.ep<i>.>`).
pub fn event_type(i: usize) -> String {
    format!("bench.ep{i}.created")
}

/// Endpoints `ep-<i>` (path `/ep-<i>`), one subscription each to their own event types; with
/// `hang`, one more endpoint (`/hang`) subscribed to the first [`HANG_SUBSCRIBED`] endpoints' types.
pub fn manifest_yaml(receiver: std::net::SocketAddr, hang: bool) -> String {
    let endpoint = |name: &str, path: &str, event_types: &[String]| {
        format!(
            "apiVersion: webhook-operator.io/v1alpha1\n\
             kind: WebhookEndpoint\n\
             metadata: {{ name: {name}, namespace: {TENANT} }}\n\
             spec:\n  \
               url: http://{receiver}/{path}\n  \
               secretRef: {{ name: bench-signing, key: secret }}\n  \
               timeout: 2s\n  \
               maxInFlight: 50\n  \
               retry: {{ maxAttempts: 3, initialBackoff: 1s, maxBackoff: 5s, maxAge: 1h }}\n\
             ---\n\
             apiVersion: webhook-operator.io/v1alpha1\n\
             kind: EventSubscription\n\
             metadata: {{ name: {name}, namespace: {TENANT} }}\n\
             spec:\n  \
               endpointRef: {{ name: {name} }}\n  \
               eventTypes: [{types}]\n\
             ---\n",
            types = event_types
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    let pattern = |i: usize| format!("bench.ep{i}.>");
    let mut yaml = String::new();
    for i in 0..ENDPOINTS {
        debug_assert!(event_type(i).starts_with(&pattern(i)[..pattern(i).len() - 1]));
        yaml.push_str(&endpoint(
            &format!("ep-{i}"),
            &format!("ep-{i}"),
            &[pattern(i)],
        ));
    }
    if hang {
        let patterns: Vec<String> = (0..HANG_SUBSCRIBED).map(pattern).collect();
        yaml.push_str(&endpoint("ep-hang", "hang", &patterns));
    }
    yaml.push_str(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: bench-signing, namespace: {TENANT} }}\nstringData: {{ secret: \"{SECRET}\" }}\n"
    ));
    yaml
}
