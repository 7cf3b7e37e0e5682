//! Per-tenant state: compiled routes in the routes bucket, and the delivery workload that runs
//! while the namespace has endpoints.

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::ServiceAccount,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Resource,
    api::{DeleteParams, Patch, PatchParams},
    runtime::reflector::ObjectRef,
};
use serde::Serialize;

use super::{
    context::Context,
    error::Error,
    workloads::{self, TENANT_ROLE},
};
use crate::resources::compile::CompiledTenantReport;

pub const MANAGER: &str = "webhook-operator";

/// Brings routes and workload of `namespace` in line with `report`.
pub async fn sync(
    ctx: &Context,
    namespace: &str,
    report: &CompiledTenantReport,
) -> Result<(), Error> {
    if report.routes.endpoints.is_empty() {
        ctx.routes.remove(namespace.to_owned()).await?;
    } else {
        ctx.routes.publish(report.routes.clone()).await?;
    }
    if ctx.endpoints(namespace).is_empty() {
        remove_workload(ctx, namespace).await
    } else {
        ensure_workload(ctx, namespace).await
    }
}

/// Applies the workload unless the live Deployment already carries the desired config hash;
/// that check keeps steady-state reconciles free of API writes.
async fn ensure_workload(ctx: &Context, namespace: &str) -> Result<(), Error> {
    let desired = workloads::build(namespace, &ctx.operator_namespace, &ctx.workloads);
    let name = workloads::workload_name(namespace);
    let live = ctx
        .stores
        .deployments
        .get(&ObjectRef::new(&name).within(&ctx.operator_namespace));
    let want = workloads::deployed_hash(&desired.deployment)
        .unwrap_or_default()
        .to_owned();
    let live_hash = live.as_deref().and_then(workloads::deployed_hash);
    if live_hash == Some(want.as_str()) || ctx.recently_applied(namespace, &want) {
        return Ok(());
    }
    let operator_ns = &ctx.operator_namespace;
    apply(
        Api::<ServiceAccount>::namespaced(ctx.client.clone(), operator_ns),
        &name,
        &desired.service_account,
    )
    .await?;
    apply(
        Api::<Role>::namespaced(ctx.client.clone(), namespace),
        TENANT_ROLE,
        &desired.role,
    )
    .await?;
    apply(
        Api::<RoleBinding>::namespaced(ctx.client.clone(), namespace),
        TENANT_ROLE,
        &desired.role_binding,
    )
    .await?;
    apply(
        Api::<Deployment>::namespaced(ctx.client.clone(), operator_ns),
        &name,
        &desired.deployment,
    )
    .await?;
    ctx.record_applied(namespace, Some(want));
    tracing::info!(tenant = namespace, deployment = %name, "applied delivery workload");
    Ok(())
}

async fn remove_workload(ctx: &Context, namespace: &str) -> Result<(), Error> {
    let name = workloads::workload_name(namespace);
    if ctx
        .stores
        .deployments
        .get(&ObjectRef::new(&name).within(&ctx.operator_namespace))
        .is_none()
    {
        return Ok(());
    }
    let operator_ns = &ctx.operator_namespace;
    delete(
        Api::<Deployment>::namespaced(ctx.client.clone(), operator_ns),
        &name,
    )
    .await?;
    delete(
        Api::<ServiceAccount>::namespaced(ctx.client.clone(), operator_ns),
        &name,
    )
    .await?;
    delete(
        Api::<RoleBinding>::namespaced(ctx.client.clone(), namespace),
        TENANT_ROLE,
    )
    .await?;
    delete(
        Api::<Role>::namespaced(ctx.client.clone(), namespace),
        TENANT_ROLE,
    )
    .await?;
    tracing::info!(
        tenant = namespace,
        "removed delivery workload: the namespace has no endpoints"
    );
    Ok(())
}

async fn apply<K>(api: Api<K>, name: &str, object: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut value = serde_json::to_value(object)?;
    // Server-side apply needs apiVersion and kind in the body; the typed structs omit them.
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), K::api_version(&()).into());
        map.insert("kind".into(), K::kind(&()).into());
    }
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(value),
    )
    .await?;
    Ok(())
}

async fn delete<K>(api: Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}
