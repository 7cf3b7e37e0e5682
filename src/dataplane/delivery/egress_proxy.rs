//! The egress proxy deliveries go through (`--egress-proxy`), so that they leave from fixed
//! addresses. How the address guard treats it: see [`super::address_guard`].

use std::fmt;

use url::{Host, Url};

/// An `http://` or `https://` forward proxy. `Display` and `Debug` hide its credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EgressProxy {
    url: Url,
}

/// An `--egress-proxy` value that is not a usable proxy URL. Never shows credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a proxy URL such as http://proxy.internal:3128: {0}")]
pub struct EgressProxyError(&'static str);

impl EgressProxy {
    pub fn parse(text: &str) -> Result<Self, EgressProxyError> {
        let url = Url::parse(text.trim()).map_err(|_| EgressProxyError("unparseable"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressProxyError("the scheme must be http or https"));
        }
        if url.host().is_none() {
            return Err(EgressProxyError("no host"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(EgressProxyError("a proxy URL has no path or query"));
        }
        Ok(Self { url })
    }

    /// The URL, credentials included: for the HTTP client only.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The proxy's host name, when it is a name rather than an address.
    pub fn domain(&self) -> Option<&str> {
        match self.url.host() {
            Some(Host::Domain(name)) => Some(name),
            _ => None,
        }
    }
}

/// The command-line parser of proxy URLs. Unlike clap's default, its error does not repeat
/// the value, which may hold the proxy's password.
#[derive(Debug, Clone, Copy)]
pub struct EgressProxyParser;

impl clap::builder::TypedValueParser for EgressProxyParser {
    type Value = EgressProxy;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<EgressProxy, clap::Error> {
        let name = arg.map(ToString::to_string).unwrap_or_default();
        let invalid = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{name}': {why}\n"),
            )
            .with_cmd(command)
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid("not valid UTF-8".into()))?;
        EgressProxy::parse(text).map_err(|e| invalid(e.to_string()))
    }
}

impl fmt::Display for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = !self.url.username().is_empty() || self.url.password().is_some();
        write!(
            f,
            "{}://{}{}",
            self.url.scheme(),
            if credentials { "***@" } else { "" },
            self.url.host_str().unwrap_or_default()
        )?;
        if let Some(port) = self.url.port_or_known_default() {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EgressProxy({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls_and_never_shows_credentials() {
        let proxy = EgressProxy::parse("http://user:hunter2@proxy.internal:3128").expect("valid");
        assert_eq!(proxy.to_string(), "http://***@proxy.internal:3128");
        assert!(!format!("{proxy:?}").contains("hunter2"));
        assert_eq!(proxy.domain(), Some("proxy.internal"));
        assert_eq!(
            EgressProxy::parse("http://10.0.0.7:3128")
                .ok()
                .and_then(|p| p.domain().map(str::to_owned)),
            None
        );
        for bad in [
            "proxy:3128",
            "socks5://p:1080",
            "http://p:3128/path",
            "http://",
            "",
        ] {
            let error = EgressProxy::parse(bad).err().map(|e| e.to_string());
            assert!(error.is_some(), "{bad:?} accepted");
        }
        let error = EgressProxy::parse("ftp://u:hunter2@p")
            .err()
            .map(|e| e.to_string());
        assert!(!error.unwrap_or_default().contains("hunter2"));
    }
}
