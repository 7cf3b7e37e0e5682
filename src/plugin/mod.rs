//! The kubectl plugin: `kubectl webhooks attempts|dead-letters|replay|send-test|enable|event|rotate-secret ...`.
//!
//! The same binary: installed (or symlinked) as `kubectl-webhooks` on the PATH, kubectl runs it
//! as `kubectl webhooks`; `webhook-operator kubectl ...` is the same command. It talks to the
//! operator's admin API through the Kubernetes API server's service proxy, so the user's
//! kubeconfig and RBAC (`services/proxy` in the operator's namespace) decide who may, or with
//! `--admin-url` straight to an admin server (local mode, a port-forward). Actions the
//! controller takes through annotations (`rotate-secret`) go to the API server itself.

mod admin_api;
mod annotate;
mod render;
mod views;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use http::Method;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

pub use admin_api::{AdminApi, ApiError, ApiPath};

/// The file name kubectl looks for on the PATH for `kubectl webhooks`.
pub const PLUGIN_BINARY: &str = "kubectl-webhooks";

/// The command line when invoked as `kubectl-webhooks`.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-webhooks",
    bin_name = "kubectl webhooks",
    version,
    about = "Inspect and operate webhook-operator endpoints: attempts, dead letters, replay, test events"
)]
pub struct PluginCli {
    #[command(flatten)]
    pub args: PluginArgs,
}

#[derive(Debug, Args)]
pub struct PluginArgs {
    /// Talk to this admin server directly (local mode, a port-forward) instead of through the
    /// Kubernetes API server.
    #[arg(long, env = "WEBHOOKS_ADMIN_URL", global = true)]
    pub admin_url: Option<Url>,
    /// Namespace the operator runs in.
    #[arg(
        long,
        env = "WEBHOOKS_OPERATOR_NAMESPACE",
        default_value = "webhook-operator",
        global = true
    )]
    pub operator_namespace: String,
    /// The operator's admin Service (the Helm chart's `<release>-controller-metrics`).
    #[arg(
        long,
        env = "WEBHOOKS_SERVICE",
        default_value = "webhook-operator-controller-metrics",
        global = true
    )]
    pub service: String,
    /// Port of that Service, by name or number.
    #[arg(long, default_value = "admin", global = true)]
    pub service_port: String,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of the endpoint or event (default: the context's namespace; with --admin-url,
    /// "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns, for people.
    Table,
    /// The admin API's JSON answer, pretty-printed.
    Json,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PluginCommand {
    /// List endpoints: health, counters, last failure.
    #[command(visible_alias = "list")]
    Endpoints {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Recent delivery attempts of an endpoint, newest first.
    Attempts {
        /// The WebhookEndpoint's name.
        endpoint: String,
        /// Only attempts with this result (success, http_4xx, http_5xx, timeout, ...).
        #[arg(long, conflicts_with = "failures")]
        result: Option<String>,
        /// Only failed attempts.
        #[arg(long)]
        failures: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// Dead letters of an endpoint, newest first.
    DeadLetters {
        endpoint: String,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// Deliver an endpoint's dead letters again (same webhook-id, signed afresh).
    Replay {
        endpoint: String,
        /// Only those dead-lettered at or after this time (RFC 3339); default: all.
        #[arg(long)]
        since: Option<Timestamp>,
    },
    /// Send a synthetic event to one endpoint, signed like any other.
    SendTest {
        endpoint: String,
        /// Its event type (default: webhook.test).
        #[arg(long)]
        event_type: Option<String>,
        /// Its payload, a JSON document.
        #[arg(long, value_parser = parse_json)]
        payload: Option<Value>,
    },
    /// Re-enable an endpoint that was disabled automatically.
    Enable { endpoint: String },
    /// An event: payload, and its delivery to each endpoint.
    Event {
        /// The event id (webhook-id).
        id: String,
    },
    /// Deliver an event again, to every endpoint it was routed to or to those named.
    Redeliver {
        id: String,
        /// An endpoint to deliver to (repeatable).
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
    },
    /// Rotate an endpoint's signing key: the operator puts a new key first in its Secret and
    /// keeps the previous one signing for an overlap (sets the annotation
    /// webhook-operator.io/rotate-signing-key; needs a cluster).
    RotateSecret { endpoint: String },
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not a JSON document: {e}"))
}

/// Runs the plugin and prints its output.
pub async fn run(args: PluginArgs) -> anyhow::Result<()> {
    let (api, namespace) = match &args.admin_url {
        Some(url) => (
            AdminApi::direct(url)?,
            args.namespace.clone().unwrap_or_else(|| "default".into()),
        ),
        None => {
            let options = kube::config::KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            let config = match args.context {
                Some(_) => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(anyhow::Error::from),
                None => kube::Config::infer().await.map_err(anyhow::Error::from),
            }
            .context("no Kubernetes configuration (for local mode, use --admin-url)")?;
            let namespace = args
                .namespace
                .clone()
                .unwrap_or_else(|| config.default_namespace.clone());
            let client = kube::Client::try_from(config)?;
            let api = AdminApi::proxy(
                client,
                &args.operator_namespace,
                &args.service,
                &args.service_port,
            );
            (api, namespace)
        }
    };
    let text = execute(&args.command, &api, &namespace, args.output).await?;
    print!("{text}");
    Ok(())
}

fn parse<T: DeserializeOwned>(request: &str, value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|source| ApiError::Decode {
        request: request.to_owned(),
        source,
    })
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// One command against the admin API; returns what to print.
pub async fn execute(
    command: &PluginCommand,
    api: &AdminApi,
    namespace: &str,
    output: Output,
) -> Result<String, ApiError> {
    let now = Timestamp::now();
    let endpoint_path = |name: &str, action: &str, query: &[(&str, String)]| {
        ApiPath::new(&["v1", "endpoints", namespace, name, action], query)
    };
    let optional_body = |body: Value| {
        body.as_object()
            .is_some_and(|o| !o.is_empty())
            .then_some(body)
    };
    let (method, path, body) = match command {
        PluginCommand::Endpoints { .. } => {
            (Method::GET, ApiPath::new(&["v1", "endpoints"], &[]), None)
        }
        PluginCommand::Attempts {
            endpoint,
            result,
            failures,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(result) = result {
                query.push(("result", result.clone()));
            } else if *failures {
                query.push(("result", "failure".into()));
            }
            (
                Method::GET,
                endpoint_path(endpoint, "attempts", &query),
                None,
            )
        }
        PluginCommand::DeadLetters { endpoint, limit } => (
            Method::GET,
            endpoint_path(endpoint, "dead-letters", &[("limit", limit.to_string())]),
            None,
        ),
        PluginCommand::Replay { endpoint, since } => {
            let body = since.map(|since| json!({ "since": since.to_string() }));
            (Method::POST, endpoint_path(endpoint, "replay", &[]), body)
        }
        PluginCommand::SendTest {
            endpoint,
            event_type,
            payload,
        } => {
            let mut body = json!({});
            if let Some(event_type) = event_type {
                body["eventType"] = json!(event_type);
            }
            if let Some(payload) = payload {
                body["payload"] = payload.clone();
            }
            (
                Method::POST,
                endpoint_path(endpoint, "test", &[]),
                optional_body(body),
            )
        }
        PluginCommand::Enable { endpoint } => {
            (Method::POST, endpoint_path(endpoint, "enable", &[]), None)
        }
        PluginCommand::Event { id } => (
            Method::GET,
            ApiPath::new(&["v1", "events", namespace, id], &[]),
            None,
        ),
        // Not the admin API's: an annotation, through the Kubernetes API server.
        PluginCommand::RotateSecret { endpoint } => {
            return annotate::rotate_secret(api, namespace, endpoint, output).await;
        }
        PluginCommand::Redeliver { id, endpoints } => {
            let body = (!endpoints.is_empty()).then(|| json!({ "endpoints": endpoints }));
            (
                Method::POST,
                ApiPath::new(&["v1", "events", namespace, id, "redeliver"], &[]),
                body,
            )
        }
    };
    let request = format!("{method} {}", path.as_str());
    let mut answer = api.call_json(method, &path, body.as_ref()).await?;
    if let PluginCommand::Endpoints { all_namespaces } = command
        && !all_namespaces
        && let Value::Array(rows) = &mut answer
    {
        rows.retain(|row| row.get("namespace").and_then(Value::as_str) == Some(namespace));
    }
    if output == Output::Json {
        return Ok(pretty(&answer));
    }
    let text = match command {
        PluginCommand::Endpoints { all_namespaces } => {
            let list: Vec<views::Endpoint> = parse(&request, answer)?;
            if list.is_empty() && !all_namespaces {
                format!("No endpoints in namespace {namespace} (-A lists every namespace).\n")
            } else {
                render::endpoints(&list, *all_namespaces, now)
            }
        }
        PluginCommand::Attempts { endpoint, .. } => {
            let list: Vec<views::Attempt> = parse(&request, answer)?;
            if list.is_empty() {
                format!("No attempts recorded for {namespace}/{endpoint}.\n")
            } else {
                render::attempts(&list, now)
            }
        }
        PluginCommand::DeadLetters { endpoint, .. } => {
            let list: Vec<views::DeadLetter> = parse(&request, answer)?;
            if list.is_empty() {
                format!("No dead letters for {namespace}/{endpoint}.\n")
            } else {
                render::dead_letters(&list, now)
            }
        }
        PluginCommand::Replay { endpoint, .. } => {
            let replayed: views::Replayed = parse(&request, answer)?;
            format!(
                "Replayed {} dead letter(s) of {namespace}/{endpoint}.\n",
                replayed.replayed
            )
        }
        PluginCommand::SendTest { endpoint, .. } => {
            let queued: views::Queued = parse(&request, answer)?;
            format!(
                "Queued test event {} for {namespace}/{endpoint}.\n",
                queued.id
            )
        }
        PluginCommand::Enable { endpoint } => {
            let enabled: views::Enabled = parse(&request, answer)?;
            if enabled.enabled {
                format!("Enabled {namespace}/{endpoint}.\n")
            } else {
                format!("{namespace}/{endpoint} is still disabled.\n")
            }
        }
        PluginCommand::Event { .. } => {
            let event: views::Event = parse(&request, answer)?;
            render::event(&event, now)
        }
        // Answered above, without the admin API.
        PluginCommand::RotateSecret { .. } => pretty(&answer),
        PluginCommand::Redeliver { id, .. } => {
            let redelivered: views::Redelivered = parse(&request, answer)?;
            format!(
                "Redelivering {namespace}/{id} to {}.\n",
                redelivered.endpoints.join(", ")
            )
        }
    };
    Ok(text)
}

#[cfg(test)]
mod tests;
