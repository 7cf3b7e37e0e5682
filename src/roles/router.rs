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
    let routes = route_store::watch(
        connected.topology.routes.clone(),
        Scope::All,
        cancel.clone(),
    );
    tokio::spawn(
        Router {
            js: connected.js.clone(),
            event_index: connected.topology.event_index.clone(),
            routes: routes.clone(),
            metrics: connected.metrics.clone(),
            limits: args.event_limits(),
        }
        .run(cancel.clone()),
    );
    let catalog = admin::catalog_from_routes(routes.clone(), cancel.clone());
    let stats = StatsView::start(connected.topology.stats.clone(), cancel.clone());
    let state =
        AdminState::for_pipeline(&connected, catalog, routes, stats, args.max_payload_bytes);
    admin::serve(args.listen, state, cancel).await?;
    Ok(())
}
