//! Reconcile errors, with a short category for logs, metrics and backoff.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} has no namespace")]
    NotNamespaced(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("routes of tenant {tenant}: {message}")]
    Routes { tenant: String, message: String },
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Enable(#[from] crate::dataplane::stats::EnableError),
    #[error("replaying dead letters of {endpoint}: {message}")]
    Replay { endpoint: String, message: String },
    #[error("the controller's caches stopped before they were listed")]
    CachesClosed,
    #[error("signing key: {0}")]
    Rotation(#[from] super::key_rotation::RotationError),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Self::NotNamespaced(_) => "invalid_object",
            Self::Kube(_) => "kubernetes_api",
            Self::Finalizer(_) => "finalizer",
            Self::Routes { .. } | Self::Replay { .. } => "nats",
            Self::Encode(_) => "encode",
            Self::Enable(_) => "nats",
            Self::CachesClosed => "kubernetes_api",
            Self::Rotation(_) => "signing_secret",
        }
    }
}
