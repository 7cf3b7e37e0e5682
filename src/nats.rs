//! NATS connection options shared by every role.

use std::{path::PathBuf, time::Duration};

#[derive(Debug, Clone, clap::Args)]
pub struct NatsOptions {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Credentials file (JWT + NKey seed) for NATS.
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// CA bundle to verify the NATS server's certificate; implies TLS.
    #[arg(long, env = "NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS with NATS.
    #[arg(long, env = "NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    #[arg(long, env = "NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("reading NATS credentials file {path}: {source}")]
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Connects, retrying with backoff until the server answers; the client reconnects by itself
/// afterwards.
pub async fn connect(options: &NatsOptions, name: &str) -> Result<async_nats::Client, NatsError> {
    let mut delay = Duration::from_millis(100);
    loop {
        let mut connect = async_nats::ConnectOptions::new()
            .name(name)
            .max_reconnects(None);
        if let Some(path) = &options.nats_creds {
            connect =
                connect
                    .credentials_file(path)
                    .await
                    .map_err(|source| NatsError::Credentials {
                        path: path.clone(),
                        source,
                    })?;
        }
        if let Some(ca) = &options.nats_tls_ca {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&options.nats_tls_cert, &options.nats_tls_key) {
            connect = connect.add_client_certificate(cert.clone(), key.clone());
        }
        match connect.connect(options.nats_url.as_str()).await {
            Ok(client) => return Ok(client),
            Err(error) => {
                tracing::warn!(url = %options.nats_url, %error, retry_in = ?delay, "cannot reach NATS yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
