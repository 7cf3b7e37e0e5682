//! Turning a host into the addresses to judge: IP literals and `localhost` directly, other
//! names through an injectable [`Lookup`].

use std::{
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    pin::Pin,
};

use super::ResolveError;

/// What a [`Lookup`] answers: the addresses of a name.
pub type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// The DNS step, injectable so tests can answer without a network.
pub trait Lookup: Send + Sync {
    fn lookup(&self, host: String) -> LookupFuture;
}

/// The system resolver (getaddrinfo on a blocking thread), as reqwest uses by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> LookupFuture {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|addr| addr.ip()).collect())
        })
    }
}

/// The addresses `host` stands for: itself if it is an address, loopback for `localhost`,
/// otherwise what `lookup` answers.
pub(super) async fn answer(host: &str, lookup: &dyn Lookup) -> Result<Vec<IpAddr>, ResolveError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    if is_localhost(host) {
        return Ok(vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]);
    }
    lookup
        .lookup(host.to_owned())
        .await
        .map_err(|source| ResolveError::Lookup {
            host: host.to_owned(),
            source,
        })
}

/// `localhost` and names under it: loopback by definition (RFC 6761), whatever DNS says.
pub(super) fn is_localhost(host: &str) -> bool {
    const SUFFIX: &[u8] = b".localhost";
    let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
    host.eq_ignore_ascii_case(&SUFFIX[1..])
        || (host.len() > SUFFIX.len()
            && host[host.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX))
}
