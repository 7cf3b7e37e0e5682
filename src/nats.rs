//! NATS connection options shared by every role: where, who (one of a credentials file, an
//! NKey seed, user and password, or a token) and TLS (a CA to verify the server, a client
//! certificate for mutual TLS).

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

#[derive(Debug, Clone, clap::Args)]
pub struct NatsOptions {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Credentials file (JWT + NKey seed) for NATS.
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// File holding an NKey user seed (`SU...`) to authenticate with.
    #[arg(long, env = "NATS_NKEY", conflicts_with = "nats_creds")]
    pub nats_nkey: Option<PathBuf>,
    /// User name for NATS; the password comes from NATS_PASSWORD.
    #[arg(
        long,
        env = "NATS_USER",
        requires = "nats_password",
        conflicts_with_all = ["nats_creds", "nats_nkey"]
    )]
    pub nats_user: Option<String>,
    /// Password for --nats-user. Prefer the environment variable: flags show in `ps`.
    #[arg(
        long,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    pub nats_password: Option<Sensitive>,
    /// Token for NATS. Prefer the environment variable: flags show in `ps`.
    #[arg(
        long,
        env = "NATS_TOKEN",
        hide_env_values = true,
        conflicts_with_all = ["nats_creds", "nats_nkey", "nats_user"]
    )]
    pub nats_token: Option<Sensitive>,
    /// CA bundle to verify the NATS server's certificate; implies TLS.
    #[arg(long, env = "NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS with NATS; implies TLS.
    #[arg(long, env = "NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// Private key of --nats-tls-cert.
    #[arg(long, env = "NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
    /// Subject prefix of this process's reply inboxes. With a prefix per NATS user (e.g.
    /// `_INBOX_router`) and subscribe permission on only its own, no user can read the replies
    /// (pulled messages included) of another (see config/nats/accounts.conf).
    #[arg(long, env = "NATS_INBOX_PREFIX", default_value = "_INBOX")]
    pub nats_inbox_prefix: String,
}

/// A secret given on the command line or in the environment. `Debug` and `Display` hide it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(String);

impl Sensitive {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Sensitive {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("reading NATS credentials file {path}: {source}")]
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading NATS NKey seed file {path}: {source}")]
    NKey {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Credentials written into a server URL (`nats://user:password@host`, `nats://token@host`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlAuth {
    UserPassword(String, Sensitive),
    Token(Sensitive),
}

/// Splits credentials off the server URLs: the client is given them as options, and the URLs
/// it is given (and logs at debug level) carry none. The first URL with credentials wins.
fn split_credentials(urls: &str) -> (String, Option<UrlAuth>) {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut auth = None;
    let stripped = urls
        .split(',')
        .map(|text| {
            let Ok(mut url) = url::Url::parse(text.trim()) else {
                return text.to_owned();
            };
            if url.username().is_empty() && url.password().is_none() {
                return text.to_owned();
            }
            let found = match url.password() {
                Some(password) => {
                    UrlAuth::UserPassword(decode(url.username()), Sensitive(decode(password)))
                }
                None => UrlAuth::Token(Sensitive(decode(url.username()))),
            };
            auth.get_or_insert(found);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        })
        .collect::<Vec<_>>()
        .join(",");
    (stripped, auth)
}

impl NatsOptions {
    /// How this process authenticates, for logs: the method, never the secret.
    pub fn auth_method(&self) -> &'static str {
        if self.nats_creds.is_some() {
            "credentials file"
        } else if self.nats_nkey.is_some() {
            "NKey"
        } else if self.nats_user.is_some() {
            "user and password"
        } else if self.nats_token.is_some() {
            "token"
        } else {
            match split_credentials(&self.nats_url).1 {
                Some(UrlAuth::UserPassword(..)) => "user and password (in the URL)",
                Some(UrlAuth::Token(_)) => "token (in the URL)",
                None => "none",
            }
        }
    }

    /// The server URLs without credentials: what the client connects to.
    fn server_urls(&self) -> String {
        split_credentials(&self.nats_url).0
    }

    async fn connect_options(&self, name: &str) -> Result<async_nats::ConnectOptions, NatsError> {
        let mut connect = async_nats::ConnectOptions::new()
            .name(name)
            .custom_inbox_prefix(&self.nats_inbox_prefix)
            .max_reconnects(None);
        if let Some(path) = &self.nats_creds {
            connect =
                connect
                    .credentials_file(path)
                    .await
                    .map_err(|source| NatsError::Credentials {
                        path: path.clone(),
                        source,
                    })?;
        }
        if let Some(path) = &self.nats_nkey {
            let seed = tokio::fs::read_to_string(path)
                .await
                .map_err(|source| NatsError::NKey {
                    path: path.clone(),
                    source,
                })?;
            connect = connect.nkey(seed.trim().to_owned());
        }
        if let (Some(user), Some(password)) = (&self.nats_user, &self.nats_password) {
            connect = connect.user_and_password(user.clone(), password.expose().to_owned());
        }
        if let Some(token) = &self.nats_token {
            connect = connect.token(token.expose().to_owned());
        }
        let explicit = self.nats_creds.is_some()
            || self.nats_nkey.is_some()
            || self.nats_user.is_some()
            || self.nats_token.is_some();
        match split_credentials(&self.nats_url).1 {
            Some(_) if explicit => {}
            Some(UrlAuth::UserPassword(user, password)) => {
                connect = connect.user_and_password(user, password.expose().to_owned());
            }
            Some(UrlAuth::Token(token)) => connect = connect.token(token.expose().to_owned()),
            None => {}
        }
        if let Some(ca) = &self.nats_tls_ca {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.nats_tls_cert, &self.nats_tls_key) {
            connect = connect
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        Ok(connect)
    }
}

/// Connects, retrying with backoff until the server answers; the client reconnects by itself
/// afterwards. Files (credentials, seed) are read once per try, so a mounted Secret that is
/// rotated is picked up by the next connection attempt of a restarted process.
pub async fn connect(options: &NatsOptions, name: &str) -> Result<async_nats::Client, NatsError> {
    let url = options.server_urls();
    tracing::info!(%url, auth = options.auth_method(), tls = options.nats_tls_ca.is_some() || options.nats_tls_cert.is_some(), "connecting to NATS");
    let mut delay = Duration::from_millis(100);
    loop {
        let connect = options.connect_options(name).await?;
        // async-nats takes a list of servers, not one comma-separated string.
        let servers: Vec<&str> = url.split(',').map(str::trim).collect();
        match connect.connect(servers).await {
            Ok(client) => return Ok(client),
            Err(error) => {
                tracing::warn!(%url, %error, retry_in = ?delay, "cannot reach NATS yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsOptions,
    }

    fn parse(args: &[&str]) -> Result<NatsOptions, String> {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map(|c| c.nats)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn one_authentication_method_at_a_time_and_secrets_stay_hidden() {
        let options =
            parse(&["--nats-user", "router", "--nats-password", "hunter2"]).expect("valid");
        assert_eq!(options.auth_method(), "user and password");
        assert!(!format!("{options:?}").contains("hunter2"));
        assert!(
            parse(&["--nats-user", "router"]).is_err(),
            "a user needs a password"
        );
        assert!(parse(&["--nats-creds", "a.creds", "--nats-nkey", "seed"]).is_err());
        assert!(
            parse(&[
                "--nats-token",
                "t",
                "--nats-user",
                "u",
                "--nats-password",
                "p"
            ])
            .is_err()
        );
        assert!(
            parse(&["--nats-tls-cert", "c.pem"]).is_err(),
            "a certificate needs its key"
        );
        assert_eq!(
            parse(&["--nats-nkey", "seed"]).map(|o| o.auth_method()),
            Ok("NKey")
        );
        assert_eq!(parse(&[]).map(|o| o.auth_method()), Ok("none"));
    }

    #[test]
    fn credentials_in_urls_become_options_and_leave_the_urls() {
        let (urls, auth) =
            split_credentials("nats://u%40x:hunter%3A2@a:4222,tls://tok@b:4222,nats://c:4222");
        assert_eq!(urls, "nats://a:4222,tls://b:4222,nats://c:4222");
        assert_eq!(
            auth,
            Some(UrlAuth::UserPassword(
                "u@x".into(),
                Sensitive("hunter:2".into())
            ))
        );
        assert_eq!(
            split_credentials("nats://tok@b:4222").1,
            Some(UrlAuth::Token(Sensitive("tok".into())))
        );
        assert_eq!(
            split_credentials("nats://a:4222"),
            ("nats://a:4222".into(), None)
        );
        let options = parse(&["--nats-url", "nats://u:hunter2@a:4222"]).expect("valid");
        assert_eq!(options.auth_method(), "user and password (in the URL)");
        assert!(!options.server_urls().contains("hunter2"));
    }
}
