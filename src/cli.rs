//! The command line: one binary, one subcommand per role.

use std::{ffi::OsString, path::Path};

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::{
    controlplane::{self, ControllerArgs},
    local::{self, LocalArgs},
    pipeline::{PipelineArgs, cancel_on_signal},
    plugin::{self, PluginArgs, PluginCli},
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
    /// The kubectl plugin (`kubectl webhooks ...` when installed as `kubectl-webhooks`):
    /// endpoints, attempts, dead letters, replay, test events.
    Kubectl(PluginArgs),
    /// Issue tenant API keys.
    ApiKey(ApiKeyArgs),
}

/// Parses the command line; invoked as `kubectl-webhooks` (by kubectl, for `kubectl webhooks`),
/// the arguments are the plugin's.
pub fn parse() -> Cli {
    parse_from(std::env::args_os())
}

pub fn parse_from(args: impl IntoIterator<Item = OsString>) -> Cli {
    let mut args = args.into_iter().peekable();
    let invoked_as_plugin = args
        .peek()
        .and_then(|argv0| Path::new(argv0).file_stem())
        .is_some_and(|stem| stem == plugin::PLUGIN_BINARY);
    if invoked_as_plugin {
        Cli {
            log_format: LogFormat::Text,
            command: Command::Kubectl(PluginCli::parse_from(args).args),
        }
    } else {
        Cli::parse_from(args)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // One process-wide TLS provider for NATS, Kubernetes and outbound webhooks.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Crdgen => {
            print!("{}", resources::crd_yaml()?);
            return Ok(());
        }
        // A client: no logs, its errors are its output.
        Command::Kubectl(args) => return plugin::run(args).await,
        _ => {}
    }
    telemetry::init(cli.log_format);
    let cancel = CancellationToken::new();
    cancel_on_signal(cancel.clone());
    match cli.command {
        Command::Local(args) => local::run(args, cancel).await,
        Command::Controller(args) => controlplane::run(args, cancel).await,
        Command::Router(args) => roles::router::run(args, cancel).await,
        Command::Deliver(args) => roles::deliver::run(args, cancel).await,
        Command::ApiKey(args) => crate::tenant_api::cli::run(args).await,
        Command::Crdgen | Command::Kubectl(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks argument definitions only when a subcommand is parsed; check them all here.
    #[test]
    fn command_line_definitions_are_consistent() {
        super::Cli::command().debug_assert();
        crate::plugin::PluginCli::command().debug_assert();
    }

    #[test]
    fn invoked_as_kubectl_webhooks_the_arguments_are_the_plugins() {
        let args = |line: &str| line.split(' ').map(Into::into).collect::<Vec<_>>();
        let as_plugin = super::parse_from(args(
            "/usr/local/bin/kubectl-webhooks attempts orders -n acme --failures",
        ));
        let as_subcommand = super::parse_from(args(
            "webhook-operator kubectl attempts orders -n acme --failures",
        ));
        for cli in [as_plugin, as_subcommand] {
            let super::Command::Kubectl(plugin) = cli.command else {
                panic!("not the plugin: {cli:?}");
            };
            assert_eq!(plugin.namespace.as_deref(), Some("acme"));
            assert!(matches!(
                plugin.command,
                crate::plugin::PluginCommand::Attempts { ref endpoint, failures: true, .. }
                    if endpoint == "orders"
            ));
        }
    }
}
