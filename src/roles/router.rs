//! `webhook-operator router`: one of several replicas sharing the events consumer.

use tokio_util::sync::CancellationToken;

use crate::{
    admin::{self, AdminState},
    dataplane::topology::Authority,
    dataplane::{
        route_store::{self, Scope},
        router::Router,
        stats::StatsView,
    },
    pipeline::PipelineArgs,
};

pub async fn run(args: PipelineArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let connected = args.connect("router", Authority::Joiner).await?;
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
        metrics: connected.metrics,
        catalog,
        stats: StatsView::start(connected.topology.stats, cancel.clone()),
        ready: ready_rx,
        max_payload_bytes: args.max_payload_bytes,
    };
    admin::serve(args.listen, state, cancel).await?;
    Ok(())
}
