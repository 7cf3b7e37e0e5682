//! `webhook-operator api-key create`: issues a tenant API key.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, api::PostParams};

use super::keys::{self, ApiKey, SECRET_NAME_PREFIX};
use crate::dataplane::ingest::is_dns_label;

#[derive(Debug, clap::Args)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    pub command: ApiKeyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Issue a key for one namespace: prints the key once; only its SHA-256 is stored, in the
    /// Secret webhook-api-key-<name> of that namespace. Revoke it by deleting that Secret.
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The tenant namespace the key may manage.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// Key id, shown in audit records (default: random). Names the Secret.
    #[arg(long)]
    pub name: Option<String>,
    /// Print the Secret manifest instead of creating it (GitOps, local mode's manifests); the
    /// key then goes to stderr.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(args: ApiKeyArgs) -> anyhow::Result<()> {
    match args.command {
        ApiKeyCommand::Create(args) => create(args).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    if !is_dns_label(&args.namespace) {
        anyhow::bail!(
            "--namespace {:?} is not a valid namespace name",
            args.namespace
        );
    }
    let key_id = args
        .name
        .clone()
        .unwrap_or_else(|| format!("key-{}", hex::encode(rand::random::<[u8; 4]>())));
    if !keys::valid_key_id(&key_id) {
        anyhow::bail!(
            "--name {key_id:?}: 1 to {} lowercase letters, digits or '-'",
            63 - SECRET_NAME_PREFIX.len()
        );
    }
    let key = ApiKey::generate();
    let secret = keys::key_secret(&args.namespace, &key_id, &key);
    if args.dry_run {
        print!("{}", serde_saphyr::to_string(&secret)?);
        eprintln!(
            "API key {key_id} for namespace {} (shown once, store it now): {}",
            args.namespace,
            key.expose()
        );
        return Ok(());
    }
    let client = Client::try_default().await?;
    let api: Api<Secret> = Api::namespaced(client, &args.namespace);
    let params = PostParams {
        field_manager: Some("webhook-operator-cli".into()),
        ..Default::default()
    };
    let secret_name = format!("{SECRET_NAME_PREFIX}{key_id}");
    match api.create(&params, &secret).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => anyhow::bail!(
            "key {key_id} already exists in namespace {}: choose another --name, or revoke it first (kubectl delete secret -n {} {secret_name})",
            args.namespace,
            args.namespace
        ),
        Err(error) => return Err(error.into()),
    }
    eprintln!(
        "Secret {}/{secret_name} created. The key is shown once, store it now:",
        args.namespace
    );
    println!("{}", key.expose());
    Ok(())
}
