//! The command line: one binary, one subcommand per role.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{self, AdminState},
    dataplane::{
        route_store::{self, Scope},
        router::Router,
        stats::StatsView,
    },
    local::{self, LocalArgs},
    pipeline::{PipelineArgs, cancel_on_signal},
    resources,
    telemetry::{self, LogFormat},
};

#[derive(Debug, Parser)]
#[command(
    name = "webhook-operator",
    version,
    about = "Kubernetes-native webhook delivery"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline in one process from manifest files, without Kubernetes.
    Local(LocalArgs),
    /// Route events to delivery jobs (one of several replicas sharing the work).
    Router(PipelineArgs),
    /// Print the CustomResourceDefinitions (the source of crds/).
    Crdgen,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Crdgen = cli.command {
        print!("{}", resources::crd_yaml()?);
        return Ok(());
    }
    telemetry::init(cli.log_format);
    // One process-wide TLS provider for NATS, Kubernetes and outbound webhooks.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cancel = CancellationToken::new();
    cancel_on_signal(cancel.clone());
    match cli.command {
        Command::Local(args) => local::run(args, cancel).await,
        Command::Router(args) => run_router(args, cancel).await,
        Command::Crdgen => Ok(()),
    }
}

async fn run_router(args: PipelineArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let connected = args.connect("router").await?;
    let mut routes = route_store::watch(
        connected.topology.routes.clone(),
        Scope::All,
        cancel.clone(),
    );
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(
        Router {
            js: connected.js.clone(),
            routes: routes.clone(),
            metrics: connected.metrics.clone(),
            limits: args.event_limits(),
        }
        .run(cancel.clone()),
    );
    let catalog = admin::catalog_from_routes(routes.clone(), cancel.clone());
    tokio::spawn(async move {
        if route_store::loaded(&mut routes).await.is_some() {
            ready_tx.send_replace(true);
        }
    });
    let state = AdminState {
        nats: connected.nats,
        js: connected.js,
        metrics: Arc::clone(&connected.metrics),
        catalog,
        stats: StatsView::start(connected.topology.stats, cancel.clone()),
        ready: ready_rx,
        max_payload_bytes: args.max_payload_bytes,
    };
    admin::serve(args.listen, state, cancel).await?;
    Ok(())
}
