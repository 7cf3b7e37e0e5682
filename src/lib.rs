//! webhook-operator: Kubernetes-native webhook delivery.
//!
//! - [`model`]: endpoints, subscriptions, routes and counters; no NATS, no Kubernetes.
//! - [`resources`]: the custom resources and their compilation into the model.
//! - [`dataplane`]: router, delivery, signing, retries, attempt log, counters (NATS JetStream).
//! - [`controlplane`]: the Kubernetes operator (reconcilers, status, leader election).
//! - [`local`]: the pipeline in one process, configured from manifest files.
//! - [`roles`]: the in-cluster data-plane roles (`router`, `deliver`).
//! - [`plugin`]: the kubectl plugin (`kubectl webhooks ...`), a client of the admin API.
//! - [`tenant_api`]: customers manage their own endpoints and subscriptions with an API key.
//! - [`admin`], [`cli`]: the edges.

pub mod admin;
pub mod cli;
pub mod controlplane;
pub mod dataplane;
pub mod local;
pub mod metrics;
pub mod model;
pub mod nats;
pub mod pipeline;
pub mod plugin;
pub mod resources;
pub mod roles;
pub mod telemetry;
pub mod tenant_api;
