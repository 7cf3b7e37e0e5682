//! Pure builders for a tenant's delivery workload: the Deployment running
//! `webhook-operator deliver --tenant <namespace>`, its ServiceAccount, and the Role and
//! RoleBinding that let it read Secrets and ConfigMaps of its own tenant namespace and nothing
//! else.
//!
//! The Deployment and ServiceAccount live in the operator's namespace (next to the NATS
//! credentials, out of tenants' reach); the Role and RoleBinding live in the tenant namespace.
//! NATS credentials and TLS material reach the pods the way the chart gives them to the
//! controller and the routers: files from mounted Secrets, passwords and tokens as environment
//! variables from Secret keys (never as literal values in the Deployment).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
            ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource,
            SecurityContext, ServiceAccount, Volume, VolumeMount,
        },
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::LabelSelector, util::intstr::IntOrString,
    },
};
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::dataplane::delivery::egress_proxy::{EgressProxy, EgressProxyParser};

pub const MANAGED_BY: &str = "webhook-operator";
pub const TENANT_LABEL: &str = "webhook-operator.io/tenant";
pub const CONFIG_HASH: &str = "webhook-operator.io/config-hash";
pub const COMPONENT: &str = "webhook-deliver";
/// Name of the Role and RoleBinding in each tenant namespace.
pub const TENANT_ROLE: &str = "webhook-operator-deliver";

/// How the operator runs delivery workloads; from its command line (and Helm values).
#[derive(Debug, Clone, PartialEq, Eq, Hash, clap::Args)]
pub struct WorkloadSettings {
    /// Container image of delivery pods (the operator's own image).
    #[arg(
        long,
        env = "DELIVER_IMAGE",
        default_value = "ghcr.io/webhook-operator/webhook-operator:latest"
    )]
    pub deliver_image: String,
    #[arg(long, env = "DELIVER_REPLICAS", default_value_t = 1)]
    pub deliver_replicas: i32,
    #[arg(long, env = "DELIVER_CPU_REQUEST", default_value = "50m")]
    pub deliver_cpu_request: String,
    #[arg(long, env = "DELIVER_MEMORY_REQUEST", default_value = "64Mi")]
    pub deliver_memory_request: String,
    #[arg(long, env = "DELIVER_CPU_LIMIT", default_value = "1")]
    pub deliver_cpu_limit: String,
    #[arg(long, env = "DELIVER_MEMORY_LIMIT", default_value = "256Mi")]
    pub deliver_memory_limit: String,
    /// Secret (in the operator namespace) with key `creds`: NATS credentials for delivery pods.
    /// `{tenant}` in the name stands for the tenant namespace (a NATS user per tenant).
    #[arg(long, env = "DELIVER_NATS_CREDS_SECRET")]
    pub deliver_nats_creds_secret: Option<String>,
    #[command(flatten)]
    pub deliver_nats: DeliverNatsSecrets,
    /// NATS URL handed to delivery pods.
    #[arg(long, env = "DELIVER_NATS_URL", default_value = "nats://nats:4222")]
    pub deliver_nats_url: String,
    /// Let delivery pods reach private and loopback addresses.
    #[arg(long, env = "DELIVER_ALLOW_PRIVATE_NETWORKS")]
    pub deliver_allow_private_networks: bool,
    /// CIDRs delivery pods may reach even though they are private (repeatable).
    #[arg(
        long = "deliver-allow-cidr",
        env = "DELIVER_ALLOW_CIDRS",
        value_delimiter = ','
    )]
    pub deliver_allow_cidrs: Vec<String>,
    #[arg(long, default_value = "json")]
    pub deliver_log_format: String,
    /// `--circuit-breaker-threshold` of delivery pods (0: no circuit breaker).
    #[arg(long, env = "DELIVER_CIRCUIT_BREAKER_THRESHOLD", default_value_t = 10)]
    pub deliver_circuit_breaker_threshold: u32,
    /// `--circuit-probe-interval` of delivery pods (Go duration).
    #[arg(
        long,
        env = "DELIVER_CIRCUIT_PROBE_INTERVAL",
        default_value = "30s",
        value_parser = go_duration_text
    )]
    pub deliver_circuit_probe_interval: String,
    /// Egress proxy of the delivery pods (their --egress-proxy).
    #[arg(long, env = "DELIVER_EGRESS_PROXY", value_name = "URL", value_parser = EgressProxyParser)]
    pub deliver_egress_proxy: Option<EgressProxy>,
    /// Refuse `http://` endpoint URLs: such endpoints are Invalid (reason HttpsRequired), and
    /// delivery pods run with --require-https.
    #[arg(long, env = "REQUIRE_HTTPS")]
    pub require_https: bool,
}

/// The settings of a controller given none of these flags (nor their environment variables);
/// tests and benches start from them and change what they look at.
impl Default for WorkloadSettings {
    fn default() -> Self {
        Self {
            deliver_image: "ghcr.io/webhook-operator/webhook-operator:latest".into(),
            deliver_replicas: 1,
            deliver_cpu_request: "50m".into(),
            deliver_memory_request: "64Mi".into(),
            deliver_cpu_limit: "1".into(),
            deliver_memory_limit: "256Mi".into(),
            deliver_nats_creds_secret: None,
            deliver_nats: DeliverNatsSecrets::default(),
            deliver_nats_url: "nats://nats:4222".into(),
            deliver_allow_private_networks: false,
            deliver_allow_cidrs: Vec::new(),
            deliver_log_format: "json".into(),
            deliver_circuit_breaker_threshold: 10,
            deliver_circuit_probe_interval: "30s".into(),
            deliver_egress_proxy: None,
            require_https: false,
        }
    }
}

fn go_duration_text(text: &str) -> Result<String, String> {
    crate::pipeline::parse_duration(text).map(|_| text.to_owned())
}

/// Secrets (in the operator namespace) with NATS authentication and TLS material for the
/// delivery pods, besides `--deliver-nats-creds-secret`. `{tenant}` in a name stands for the
/// tenant namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, clap::Args)]
pub struct DeliverNatsSecrets {
    /// Secret with key `nkey`: an NKey user seed.
    #[arg(
        long = "deliver-nats-nkey-secret",
        env = "DELIVER_NATS_NKEY_SECRET",
        conflicts_with = "deliver_nats_creds_secret"
    )]
    pub nkey: Option<String>,
    /// Secret with keys `username` and `password` (a kubernetes.io/basic-auth Secret fits).
    #[arg(
        long = "deliver-nats-user-secret",
        env = "DELIVER_NATS_USER_SECRET",
        conflicts_with_all = ["deliver_nats_creds_secret", "nkey"]
    )]
    pub user: Option<String>,
    /// Secret with key `token`.
    #[arg(
        long = "deliver-nats-token-secret",
        env = "DELIVER_NATS_TOKEN_SECRET",
        conflicts_with_all = ["deliver_nats_creds_secret", "nkey", "user"]
    )]
    pub token: Option<String>,
    /// Secret with the CA bundle that verifies the NATS server (key: --deliver-nats-tls-ca-key).
    #[arg(
        long = "deliver-nats-tls-ca-secret",
        env = "DELIVER_NATS_TLS_CA_SECRET"
    )]
    pub tls_ca: Option<String>,
    #[arg(
        long = "deliver-nats-tls-ca-key",
        env = "DELIVER_NATS_TLS_CA_KEY",
        default_value = "ca.crt"
    )]
    pub tls_ca_key: String,
    /// kubernetes.io/tls Secret (`tls.crt`, `tls.key`) for mutual TLS with NATS.
    #[arg(
        long = "deliver-nats-tls-client-secret",
        env = "DELIVER_NATS_TLS_CLIENT_SECRET"
    )]
    pub tls_client: Option<String>,
    /// Reply inbox prefix of the delivery pods (their --nats-inbox-prefix), e.g.
    /// `_INBOX_deliver_{tenant}`; `{tenant}` stands for the tenant namespace.
    #[arg(long = "deliver-nats-inbox-prefix", env = "DELIVER_NATS_INBOX_PREFIX")]
    pub inbox_prefix: Option<String>,
}

impl Default for DeliverNatsSecrets {
    fn default() -> Self {
        Self {
            nkey: None,
            user: None,
            token: None,
            tls_ca: None,
            tls_ca_key: "ca.crt".into(),
            tls_client: None,
            inbox_prefix: None,
        }
    }
}

/// Where delivery pods find mounted NATS files.
const NATS_FILES: &str = "/etc/webhook-operator";

/// Every object of one tenant's delivery workload.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantWorkload {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub deployment: Deployment,
}

/// Name of the Deployment and ServiceAccount of a tenant (in the operator namespace).
pub fn workload_name(tenant: &str) -> String {
    // Namespace names are at most 63 characters; the result stays a valid DNS label.
    let name = format!("{COMPONENT}-{tenant}");
    if name.len() <= 63 {
        return name;
    }
    let digest = Sha256::digest(tenant.as_bytes());
    format!(
        "{COMPONENT}-{}-{:x}",
        &tenant[..30],
        u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
    )
}

pub fn labels(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), COMPONENT.into()),
        ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
        (TENANT_LABEL.into(), tenant.into()),
    ])
}

/// Builds the workload of `tenant`; `operator_namespace` is where the operator runs.
pub fn build(
    tenant: &str,
    operator_namespace: &str,
    settings: &WorkloadSettings,
) -> TenantWorkload {
    let name = workload_name(tenant);
    let labels = labels(tenant);
    let meta = |namespace: &str, name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    let service_account = ServiceAccount {
        metadata: meta(operator_namespace, &name),
        automount_service_account_token: Some(true),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(tenant, TENANT_ROLE),
        // ConfigMaps: CA bundles (spec.tls.caBundleRef) may live in one.
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into(), "configmaps".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
    };
    let role_binding = RoleBinding {
        metadata: meta(tenant, TENANT_ROLE),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: TENANT_ROLE.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: name.clone(),
            namespace: Some(operator_namespace.into()),
            ..Default::default()
        }]),
    };
    let deployment = deployment(
        tenant,
        &name,
        meta(operator_namespace, &name),
        &labels,
        settings,
    );
    TenantWorkload {
        service_account,
        role,
        role_binding,
        deployment,
    }
}

fn deployment(
    tenant: &str,
    name: &str,
    metadata: ObjectMeta,
    labels: &BTreeMap<String, String>,
    settings: &WorkloadSettings,
) -> Deployment {
    let mut args = vec![
        "deliver".to_string(),
        "--tenant".into(),
        tenant.into(),
        "--listen".into(),
        "0.0.0.0:8080".into(),
        "--log-format".into(),
        settings.deliver_log_format.clone(),
    ];
    if settings.deliver_allow_private_networks {
        args.push("--allow-private-networks".into());
    }
    for cidr in &settings.deliver_allow_cidrs {
        args.extend(["--allow-cidr".to_string(), cidr.clone()]);
    }
    args.extend([
        "--circuit-breaker-threshold".to_string(),
        settings.deliver_circuit_breaker_threshold.to_string(),
        "--circuit-probe-interval".into(),
        settings.deliver_circuit_probe_interval.clone(),
    ]);
    if let Some(proxy) = &settings.deliver_egress_proxy {
        args.extend(["--egress-proxy".to_string(), proxy.url().to_string()]);
    }
    if settings.require_https {
        args.push("--require-https".into());
    }
    let mut env = vec![
        EnvVar {
            name: "NATS_URL".into(),
            value: Some(settings.deliver_nats_url.clone()),
            ..Default::default()
        },
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let nats = nats_material(tenant, settings);
    env.extend(nats.env);
    let (volumes, mounts) = (nats.volumes, nats.mounts);
    let quantity = |q: &str| Quantity(q.to_owned());
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    };
    let container = Container {
        name: "deliver".into(),
        image: Some(settings.deliver_image.clone()),
        args: Some(args),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("admin".into()),
            container_port: 8080,
            ..Default::default()
        }]),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(probe("/healthz")),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), quantity(&settings.deliver_cpu_request)),
                ("memory".into(), quantity(&settings.deliver_memory_request)),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".into(), quantity(&settings.deliver_cpu_limit)),
                ("memory".into(), quantity(&settings.deliver_memory_limit)),
            ])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    };
    let mut pod_annotations = BTreeMap::new();
    pod_annotations.insert(CONFIG_HASH.to_string(), config_hash(tenant, settings));
    Deployment {
        metadata,
        spec: DeploymentSpec {
            replicas: Some(settings.deliver_replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.into()),
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// NATS authentication and TLS of a delivery pod: environment, volumes and their mounts.
#[derive(Default)]
struct NatsMaterial {
    env: Vec<EnvVar>,
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
}

impl NatsMaterial {
    /// Mounts `keys` of `secret` under `NATS_FILES/<volume>/` and points `variables` (one per
    /// key) at the files.
    fn files(&mut self, volume: &str, secret: String, keys: &[(&str, &str)]) {
        let directory = format!("{NATS_FILES}/{volume}");
        self.volumes.push(Volume {
            name: volume.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                items: Some(
                    keys.iter()
                        .map(|(key, _)| KeyToPath {
                            key: (*key).into(),
                            path: (*key).into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        });
        self.mounts.push(VolumeMount {
            name: volume.into(),
            mount_path: directory.clone(),
            read_only: Some(true),
            ..Default::default()
        });
        for (key, variable) in keys {
            self.env
                .push(literal(variable, format!("{directory}/{key}")));
        }
    }

    /// Sets `variable` from `key` of `secret` (the value never appears in the Deployment).
    fn secret_env(&mut self, variable: &str, secret: &str, key: &str) {
        self.env.push(EnvVar {
            name: variable.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.into(),
                    key: key.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
}

fn literal(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// A Secret name with `{tenant}` replaced.
fn for_tenant(name: &str, tenant: &str) -> String {
    name.replace("{tenant}", tenant)
}

fn nats_material(tenant: &str, settings: &WorkloadSettings) -> NatsMaterial {
    let mut nats = NatsMaterial::default();
    let secrets = &settings.deliver_nats;
    if let Some(secret) = &settings.deliver_nats_creds_secret {
        nats.files(
            "nats-creds",
            for_tenant(secret, tenant),
            &[("creds", "NATS_CREDS")],
        );
    }
    if let Some(secret) = &secrets.nkey {
        nats.files(
            "nats-nkey",
            for_tenant(secret, tenant),
            &[("nkey", "NATS_NKEY")],
        );
    }
    if let Some(secret) = &secrets.user {
        let secret = for_tenant(secret, tenant);
        nats.secret_env("NATS_USER", &secret, "username");
        nats.secret_env("NATS_PASSWORD", &secret, "password");
    }
    if let Some(secret) = &secrets.token {
        nats.secret_env("NATS_TOKEN", &for_tenant(secret, tenant), "token");
    }
    if let Some(secret) = &secrets.tls_ca {
        nats.files(
            "nats-tls-ca",
            for_tenant(secret, tenant),
            &[(secrets.tls_ca_key.as_str(), "NATS_TLS_CA")],
        );
    }
    if let Some(prefix) = &secrets.inbox_prefix {
        nats.env
            .push(literal("NATS_INBOX_PREFIX", for_tenant(prefix, tenant)));
    }
    if let Some(secret) = &secrets.tls_client {
        nats.files(
            "nats-tls-client",
            for_tenant(secret, tenant),
            &[("tls.crt", "NATS_TLS_CERT"), ("tls.key", "NATS_TLS_KEY")],
        );
    }
    nats
}

/// Hash of everything that shapes the pods, so a settings change rolls them.
pub fn config_hash(tenant: &str, settings: &WorkloadSettings) -> String {
    // Debug hides the proxy's credentials; a change of them must still roll the pods.
    let proxy = settings
        .deliver_egress_proxy
        .as_ref()
        .map(|p| p.url().as_str());
    let text = format!("{tenant}\n{settings:?}\n{proxy:?}");
    let digest = Sha256::digest(text.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The config hash a live Deployment was built with.
pub fn deployed_hash(deployment: &Deployment) -> Option<&str> {
    deployment
        .spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WorkloadSettings {
        WorkloadSettings {
            deliver_image: "example/webhook-operator:1".into(),
            deliver_replicas: 2,
            deliver_nats_creds_secret: Some("nats-creds".into()),
            ..Default::default()
        }
    }

    #[test]
    fn default_settings_are_the_command_line_defaults() {
        use clap::{Args, FromArgMatches};
        // Without the environment variables, which could set any of them.
        let command = WorkloadSettings::augment_args(clap::Command::new("controller"))
            .mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command
            .try_get_matches_from(["controller"])
            .expect("no flags");
        let parsed = WorkloadSettings::from_arg_matches(&matches).expect("settings");
        assert_eq!(parsed, WorkloadSettings::default());
    }

    #[test]
    fn role_grants_only_reading_secrets_and_config_maps_of_the_tenant() {
        let w = build("acme", "webhook-system", &settings());
        assert_eq!(w.role.metadata.namespace.as_deref(), Some("acme"));
        let rules = w.role.rules.unwrap_or_default();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resources,
            Some(vec!["secrets".to_string(), "configmaps".to_string()])
        );
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
        let subject = &w.role_binding.subjects.unwrap_or_default()[0];
        assert_eq!(
            (subject.name.as_str(), subject.namespace.as_deref()),
            ("webhook-deliver-acme", Some("webhook-system"))
        );
    }

    #[test]
    fn deployment_runs_deliver_for_its_tenant_hardened() {
        let w = build("acme", "webhook-system", &settings());
        let spec = w.deployment.spec;
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.unwrap_or_default();
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("webhook-deliver-acme")
        );
        let container = &pod.containers[0];
        assert_eq!(
            container.args.as_deref().unwrap_or_default()[..3],
            ["deliver", "--tenant", "acme"]
        );
        let security = container.security_context.clone().unwrap_or_default();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert!(
            container
                .env
                .iter()
                .flatten()
                .any(|e| e.name == "NATS_CREDS")
        );
    }

    #[test]
    fn settings_changes_roll_the_pods() {
        let a = build("acme", "ns", &settings()).deployment;
        let mut changed = settings();
        changed.deliver_memory_limit = "512Mi".into();
        let b = build("acme", "ns", &changed).deployment;
        assert_ne!(deployed_hash(&a), deployed_hash(&b));
        assert_eq!(
            deployed_hash(&a),
            deployed_hash(&build("acme", "ns", &settings()).deployment)
        );
    }

    #[test]
    fn long_tenant_names_stay_valid_labels() {
        let tenant = "t".repeat(63);
        let name = workload_name(&tenant);
        assert!(name.len() <= 63, "{name}");
        assert_ne!(workload_name(&tenant), workload_name(&"u".repeat(63)));
    }

    fn container(settings: &WorkloadSettings) -> Container {
        build("acme", "webhook-system", settings)
            .deployment
            .spec
            .template
            .spec
            .map(|p| p.containers[0].clone())
            .unwrap_or_default()
    }

    #[test]
    fn nats_material_reaches_the_pods_as_files_and_secret_references() {
        let mut s = settings();
        s.deliver_nats_creds_secret = Some("nats-{tenant}".into());
        s.deliver_nats = DeliverNatsSecrets {
            nkey: None,
            user: Some("deliver-{tenant}-user".into()),
            token: None,
            tls_ca: Some("nats-ca".into()),
            tls_ca_key: "bundle.pem".into(),
            tls_client: Some("nats-client".into()),
            inbox_prefix: Some("_INBOX_deliver_{tenant}".into()),
        };
        let pod = build("acme", "webhook-system", &s)
            .deployment
            .spec
            .template
            .spec
            .unwrap_or_default();
        let c = &pod.containers[0];
        let env: BTreeMap<_, _> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e))
            .collect();
        let value = |name: &str| env.get(name).and_then(|e| e.value.clone());
        assert_eq!(
            value("NATS_CREDS").as_deref(),
            Some("/etc/webhook-operator/nats-creds/creds")
        );
        assert_eq!(
            value("NATS_TLS_CA").as_deref(),
            Some("/etc/webhook-operator/nats-tls-ca/bundle.pem")
        );
        assert_eq!(
            value("NATS_TLS_KEY").as_deref(),
            Some("/etc/webhook-operator/nats-tls-client/tls.key")
        );
        assert_eq!(
            value("NATS_INBOX_PREFIX").as_deref(),
            Some("_INBOX_deliver_acme")
        );
        for (variable, key) in [("NATS_USER", "username"), ("NATS_PASSWORD", "password")] {
            let reference = env[variable]
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.clone())
                .unwrap_or_default();
            assert_eq!(
                (reference.name.as_str(), reference.key.as_str()),
                ("deliver-acme-user", key)
            );
            assert_eq!(env[variable].value, None, "{variable} is never a literal");
        }
        // Every file variable points into a mounted volume of the right Secret and key.
        let volumes: BTreeMap<_, _> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v))
            .collect();
        for mount in c.volume_mounts.iter().flatten() {
            let secret = volumes[mount.name.as_str()]
                .secret
                .clone()
                .unwrap_or_default();
            for item in secret.items.unwrap_or_default() {
                let path = format!("{}/{}", mount.mount_path, item.path);
                assert!(
                    c.env
                        .iter()
                        .flatten()
                        .any(|e| e.value.as_deref() == Some(path.as_str())),
                    "{path}"
                );
            }
        }
        assert_eq!(
            volumes["nats-creds"]
                .secret
                .as_ref()
                .and_then(|s| s.secret_name.as_deref()),
            Some("nats-acme")
        );
    }

    #[test]
    fn proxy_and_https_rule_are_handed_to_the_pods() {
        let mut s = settings();
        assert!(
            !container(&s)
                .args
                .unwrap_or_default()
                .iter()
                .any(|a| a == "--require-https")
        );
        s.require_https = true;
        s.deliver_egress_proxy = EgressProxy::parse("http://egress.internal:3128").ok();
        let args = container(&s).args.unwrap_or_default();
        assert!(args.iter().any(|a| a == "--require-https"));
        let proxy = args
            .iter()
            .position(|a| a == "--egress-proxy")
            .map(|i| args[i + 1].as_str());
        assert_eq!(proxy, Some("http://egress.internal:3128/"));
        assert_ne!(
            deployed_hash(&build("acme", "ns", &s).deployment),
            deployed_hash(&build("acme", "ns", &settings()).deployment)
        );
    }
}
