//! The guard built into reqwest: the resolver that hands the connector only checked
//! addresses, and the client that checks IP literals and proxied targets before a request.

use std::{fmt, net::SocketAddr, sync::Arc};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::{AddressGuard, Lookup, ResolveError, lookup::answer};
use crate::dataplane::delivery::egress_proxy::EgressProxy;

/// reqwest's resolver: resolves, then hands over only the addresses the guard allows. The
/// egress proxy's own name is the exception: the operator chose it, and only it is dialled.
struct GuardedResolver {
    guard: Arc<AddressGuard>,
    lookup: Arc<dyn Lookup>,
    proxy_host: Option<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let lookup = self.lookup.clone();
        let is_proxy = self
            .proxy_host
            .as_deref()
            .is_some_and(|proxy| proxy.eq_ignore_ascii_case(name.as_str()));
        Box::pin(async move {
            let resolved = if is_proxy {
                answer(name.as_str(), lookup.as_ref()).await
            } else {
                guard.resolve(name.as_str(), lookup.as_ref()).await
            };
            match resolved {
                // The port is filled in by the connector from the URL.
                Ok(ips) => Ok(Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0))) as Addrs),
                // Unwrapped, so that `blocked_cause` finds it in reqwest's error chain.
                Err(ResolveError::Blocked(blocked)) => Err(blocked.into()),
                Err(other) => Err(other.into()),
            }
        })
    }
}

/// The outbound HTTP client with the guard built into it. Clones share the connection pool.
#[derive(Clone)]
pub struct GuardedClient {
    http: reqwest::Client,
    guard: Arc<AddressGuard>,
    /// Set when requests go through the egress proxy: targets are resolved and checked here,
    /// before the proxy is asked to connect to them.
    proxied: Option<Arc<dyn Lookup>>,
}

impl fmt::Debug for GuardedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedClient")
            .field("guard", &self.guard)
            .field("proxied", &self.proxied.is_some())
            .finish()
    }
}

impl GuardedClient {
    /// Finishes `builder` with the guard's resolver, and with `proxy` as the only proxy (no
    /// proxy from the environment).
    pub fn build(
        builder: reqwest::ClientBuilder,
        guard: AddressGuard,
        lookup: Arc<dyn Lookup>,
        proxy: Option<&EgressProxy>,
    ) -> Result<Self, reqwest::Error> {
        let guard = Arc::new(guard);
        let builder = match proxy {
            Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.url().as_str())?),
            None => builder.no_proxy(),
        };
        let http = builder
            .dns_resolver(GuardedResolver {
                guard: guard.clone(),
                lookup: lookup.clone(),
                proxy_host: proxy.and_then(EgressProxy::domain).map(str::to_owned),
            })
            .build()?;
        Ok(Self {
            http,
            guard,
            proxied: proxy.map(|_| lookup),
        })
    }

    pub fn guard(&self) -> &AddressGuard {
        &self.guard
    }

    /// A POST to `url`, unless its host is a blocked IP literal or, through the egress proxy,
    /// a name with a blocked address (or one that does not resolve). Without a proxy, names
    /// are checked while the connection is made. An unparseable URL is passed on as it is,
    /// for reqwest to report as a request error.
    pub async fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, ResolveError> {
        let Ok(url) = Url::parse(url) else {
            return Ok(self.http.post(url));
        };
        self.guard.check_url(&url)?;
        if let (Some(lookup), Some(Host::Domain(name))) = (&self.proxied, url.host()) {
            self.guard.resolve_every(name, lookup.as_ref()).await?;
        }
        Ok(self.http.post(url))
    }
}
