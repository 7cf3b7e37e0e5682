//! Start-up shared by every role that runs pipeline pieces: connect, create the topology,
//! and the settings that shape both.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_nats::jetstream;

use crate::{
    dataplane::{
        plan::EventLimits,
        topology::{self, Authority, Topology, TopologySettings},
    },
    metrics::Metrics,
    model::duration,
    nats::{self, NatsOptions},
};

/// Settings of the pipeline, common to `local`, `router` and `deliver`.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub nats: NatsOptions,
    /// Address of the admin server (health, metrics, API).
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Largest payload delivered; larger events are dead-lettered with reason PayloadTooLarge.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_payload_bytes: usize,
    /// How long published events are kept in the events stream (Go duration).
    #[arg(long, default_value = "168h", value_parser = parse_duration)]
    pub events_max_age: Duration,
    /// Window in which a repeated event id (`Nats-Msg-Id`) is ignored (Go duration).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub duplicate_window: Duration,
    /// Replicas of every stream and bucket (3 on a NATS cluster).
    #[arg(long, default_value_t = 1)]
    pub stream_replicas: usize,
    /// Above this many endpoints, metrics record the endpoint label as `_overflow`.
    #[arg(long, default_value_t = 1000)]
    pub metrics_max_endpoints: usize,
}

/// Parses a Go duration command-line value (`500ms`, `30s`, `120h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    duration::parse(text).map_err(|e| e.to_string())
}

/// A connected process: NATS, JetStream, the topology and the metrics registry.
pub struct Connected {
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub topology: Topology,
    pub metrics: Arc<Metrics>,
}

impl PipelineArgs {
    pub fn topology(&self) -> TopologySettings {
        TopologySettings {
            replicas: self.stream_replicas,
            events_max_age: self.events_max_age,
            duplicate_window: self.duplicate_window,
            ..TopologySettings::default()
        }
    }

    pub fn event_limits(&self) -> EventLimits {
        EventLimits {
            max_payload_bytes: self.max_payload_bytes,
        }
    }

    /// Connects and creates (or updates) streams and buckets, retrying until both succeed.
    /// `authority` says whether this role owns stream settings (see [`Authority`]).
    pub async fn connect(&self, role: &str, authority: Authority) -> anyhow::Result<Connected> {
        let nats = nats::connect(&self.nats, &format!("webhook-operator-{role}")).await?;
        let js = jetstream::new(nats.clone());
        let settings = self.topology();
        let topology = loop {
            match topology::ensure(&js, &settings, authority).await {
                Ok(topology) => break topology,
                Err(error) => {
                    tracing::warn!(%error, "JetStream not ready; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let metrics = Arc::new(Metrics::new(self.metrics_max_endpoints));
        Ok(Connected {
            nats,
            js,
            topology,
            metrics,
        })
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}
