//! Pure builders for a tenant's delivery workload: the Deployment running
//! `webhook-operator deliver --tenant <namespace>`, its ServiceAccount, and the Role and
//! RoleBinding that let it read Secrets of its own tenant namespace and nothing else.
//!
//! The Deployment and ServiceAccount live in the operator's namespace (next to the NATS
//! credentials, out of tenants' reach); the Role and RoleBinding live in the tenant namespace.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
            ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
            ServiceAccount, Volume, VolumeMount,
        },
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::LabelSelector, util::intstr::IntOrString,
    },
};
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

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
    #[arg(long, env = "DELIVER_NATS_CREDS_SECRET")]
    pub deliver_nats_creds_secret: Option<String>,
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
}

fn go_duration_text(text: &str) -> Result<String, String> {
    crate::pipeline::parse_duration(text).map(|_| text.to_owned())
}

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
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
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
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(secret) = &settings.deliver_nats_creds_secret {
        volumes.push(Volume {
            name: "nats-creds".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "nats-creds".into(),
            mount_path: "/etc/nats".into(),
            read_only: Some(true),
            ..Default::default()
        });
        env.push(EnvVar {
            name: "NATS_CREDS".into(),
            value: Some("/etc/nats/creds".into()),
            ..Default::default()
        });
    }
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

/// Hash of everything that shapes the pods, so a settings change rolls them.
pub fn config_hash(tenant: &str, settings: &WorkloadSettings) -> String {
    let text = format!("{tenant}\n{settings:?}");
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
            deliver_cpu_request: "50m".into(),
            deliver_memory_request: "64Mi".into(),
            deliver_cpu_limit: "1".into(),
            deliver_memory_limit: "256Mi".into(),
            deliver_nats_creds_secret: Some("nats-creds".into()),
            deliver_nats_url: "nats://nats:4222".into(),
            deliver_allow_private_networks: false,
            deliver_allow_cidrs: Vec::new(),
            deliver_log_format: "json".into(),
            deliver_circuit_breaker_threshold: 10,
            deliver_circuit_probe_interval: "30s".into(),
        }
    }

    #[test]
    fn role_grants_only_reading_secrets_of_the_tenant() {
        let w = build("acme", "webhook-system", &settings());
        assert_eq!(w.role.metadata.namespace.as_deref(), Some("acme"));
        let rules = w.role.rules.unwrap_or_default();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].resources, Some(vec!["secrets".to_string()]));
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
}
