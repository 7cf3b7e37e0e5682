//! The command line: one binary, one subcommand per role.

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::{
    controlplane::{self, ControllerArgs},
    local::{self, LocalArgs},
    pipeline::{PipelineArgs, cancel_on_signal},
    resources,
    roles::{self, deliver::DeliverArgs},
    telemetry::{self, LogFormat},
    tenant_api::cli::ApiKeyArgs,
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
#[allow(clippy::large_enum_variant, reason = "parsed once at start-up")]
pub enum Command {
    /// Run the whole pipeline in one process from manifest files, without Kubernetes.
    Local(LocalArgs),
    /// Reconcile WebhookEndpoints and EventSubscriptions into routes, workloads and status.
    Controller(ControllerArgs),
    /// Route events to delivery jobs (one of several replicas sharing the work).
    Router(PipelineArgs),
    /// Deliver the jobs of one tenant's endpoints.
    Deliver(DeliverArgs),
    /// Print the CustomResourceDefinitions (the source of crds/).
    Crdgen,
    /// Issue tenant API keys.
    ApiKey(ApiKeyArgs),
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
        Command::Controller(args) => controlplane::run(args, cancel).await,
        Command::Router(args) => roles::router::run(args, cancel).await,
        Command::Deliver(args) => roles::deliver::run(args, cancel).await,
        Command::ApiKey(args) => crate::tenant_api::cli::run(args).await,
        Command::Crdgen => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks argument definitions only when a subcommand is parsed; check them all here.
    #[test]
    fn command_line_definitions_are_consistent() {
        super::Cli::command().debug_assert();
    }
}
