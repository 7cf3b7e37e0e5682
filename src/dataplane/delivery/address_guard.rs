//! The outbound address guard (SSRF protection).
//!
//! Endpoint URLs are tenant input. Without a guard a tenant could make the operator POST to
//! whatever the operator can reach: the Kubernetes API, NATS, other tenants' services, the cloud
//! metadata service at 169.254.169.254. So every address a delivery connects to is checked
//! first, and loopback, private, link-local, multicast, unspecified and reserved addresses are
//! refused unless `--allow-private-networks` (everything) or `--allow-cidr` (listed ranges)
//! says otherwise.
//!
//! Where the check happens:
//! - Host names are checked inside DNS resolution: [`GuardedResolver`] is the client's resolver
//!   and hands the connector only the addresses it checked. The connection therefore goes to a
//!   checked address, and there is no window between check and connect for a second DNS answer
//!   to change it (DNS rebinding). Pooled connections were checked when they were opened.
//! - IP-literal hosts never reach a resolver (hyper dials them directly), so
//!   [`GuardedClient::post`] checks them on the parsed [`Url`] that is then handed to reqwest.
//!   The `url` crate has already normalised odd IPv4 spellings (`http://2130706433/`,
//!   `http://0x7f.1/`, `http://0177.0.0.1/` are all `127.0.0.1`), so what is checked is exactly
//!   what is dialled.
//! - With an egress proxy (`--egress-proxy`), the proxy connects to the target, so the
//!   resolver only ever sees the proxy's own name, which is allowed (the operator chose it).
//!   The target is then checked before the request is handed to the proxy: an IP literal as
//!   above, a name by resolving it here and requiring *every* address in the answer to be
//!   allowed (the proxy may pick any of them). The proxy resolves the name again, so a DNS
//!   answer that changes in between (rebinding) is not caught here: pair the proxy with
//!   an egress policy of its own. Without `--egress-proxy`, `HTTP(S)_PROXY` are ignored.
//! - `localhost` and `*.localhost` answer `127.0.0.1` and `::1` without asking DNS
//!   (RFC 6761), so they are refused the same way on every machine.
//!
//! An answer that mixes allowed and blocked addresses (`rebind.example` → 93.184.216.34 and
//! 127.0.0.1) is *filtered*: the connector only ever sees the allowed ones, so the blocked ones
//! are never dialled. Refusing the whole answer would be no safer and would break hosts that
//! publish, say, a unique-local AAAA record next to a public A record. Only when nothing is
//! left does resolution fail, with a [`BlockedTarget`] naming every refused address; delivery
//! classifies that as `BlockedAddress` and never retries it.

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::Arc,
};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::egress_proxy::EgressProxy;

/// How a refusal tells the operator to lift it.
const HOW_TO_ALLOW: &str = "blocked; allow with --allow-private-networks or --allow-cidr";

/// The command-line switches of the guard, shared by `local` and `deliver`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AddressGuardArgs {
    /// Allow deliveries to loopback, private, link-local and other non-public addresses
    /// (needed for receivers on this machine). Turns the outbound address guard off.
    #[arg(long)]
    pub allow_private_networks: bool,
    /// Allow deliveries to addresses in this CIDR (or single address) even though it lies in a
    /// blocked range, e.g. `10.20.0.0/16`. Repeatable; ALLOW_CIDRS takes a comma-separated list.
    #[arg(
        long = "allow-cidr",
        value_name = "CIDR",
        env = "ALLOW_CIDRS",
        value_delimiter = ',',
        value_parser = parse_cidr_entry
    )]
    pub allow_cidrs: Vec<Option<IpNet>>,
}

impl AddressGuardArgs {
    pub fn guard(&self) -> AddressGuard {
        AddressGuard::new(
            self.allow_private_networks,
            self.allow_cidrs.iter().flatten().copied().collect(),
        )
    }
}

/// One entry of the `--allow-cidr` list. Blank entries are skipped, so a deployment can always
/// set ALLOW_CIDRS, to an empty string when nothing is allowed.
fn parse_cidr_entry(value: &str) -> Result<Option<IpNet>, CidrError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    parse_cidr(value).map(Some)
}

/// An `--allow-cidr` value that is neither a CIDR nor an address.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a CIDR such as 10.0.0.0/8 or fd00::/8, nor an IP address")]
pub struct CidrError(String);

/// Parses an `--allow-cidr` value: a CIDR, or a single address (a /32 or /128). Host bits are
/// cleared, so `10.1.2.3/8` means `10.0.0.0/8`.
pub fn parse_cidr(value: &str) -> Result<IpNet, CidrError> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| CidrError(value.to_owned()))
}

/// A blocked range: what it is (read after "is": `loopback`, `link-local`, ...) and its CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockedRange {
    pub kind: &'static str,
    pub cidr: &'static str,
}

struct V4Range {
    net: u32,
    prefix: u32,
    range: BlockedRange,
}

struct V6Range {
    net: u128,
    prefix: u32,
    range: BlockedRange,
}

const fn v4(net: [u8; 4], prefix: u32, kind: &'static str, cidr: &'static str) -> V4Range {
    V4Range {
        net: u32::from_be_bytes(net),
        prefix,
        range: BlockedRange { kind, cidr },
    }
}

const fn v6(net: u128, prefix: u32, kind: &'static str, cidr: &'static str) -> V6Range {
    V6Range {
        net,
        prefix,
        range: BlockedRange { kind, cidr },
    }
}

/// Every IPv4 range that is not the public Internet. Most specific first: the first match names
/// the range (255.255.255.255 is broadcast before it is reserved).
const BLOCKED_V4: &[V4Range] = &[
    v4([0, 0, 0, 0], 8, "unspecified", "0.0.0.0/8"),
    v4([10, 0, 0, 0], 8, "private", "10.0.0.0/8"),
    v4([100, 64, 0, 0], 10, "carrier-grade NAT", "100.64.0.0/10"),
    v4([127, 0, 0, 0], 8, "loopback", "127.0.0.0/8"),
    v4([169, 254, 0, 0], 16, "link-local", "169.254.0.0/16"),
    v4([172, 16, 0, 0], 12, "private", "172.16.0.0/12"),
    v4([192, 0, 0, 0], 24, "reserved", "192.0.0.0/24"),
    v4([192, 0, 2, 0], 24, "documentation", "192.0.2.0/24"),
    v4([192, 88, 99, 0], 24, "reserved", "192.88.99.0/24"),
    v4([192, 168, 0, 0], 16, "private", "192.168.0.0/16"),
    v4([198, 18, 0, 0], 15, "benchmarking", "198.18.0.0/15"),
    v4([198, 51, 100, 0], 24, "documentation", "198.51.100.0/24"),
    v4([203, 0, 113, 0], 24, "documentation", "203.0.113.0/24"),
    v4([224, 0, 0, 0], 4, "multicast", "224.0.0.0/4"),
    v4([255, 255, 255, 255], 32, "broadcast", "255.255.255.255/32"),
    v4([240, 0, 0, 0], 4, "reserved", "240.0.0.0/4"),
];

const UNSPECIFIED_V6: BlockedRange = BlockedRange {
    kind: "unspecified",
    cidr: "::/128",
};
const LOOPBACK_V6: BlockedRange = BlockedRange {
    kind: "loopback",
    cidr: "::1/128",
};

/// IPv6 ranges that are not the public Internet, apart from `::`, `::1` and the forms that
/// embed an IPv4 address (those are judged by the IPv4 address, see [`embedded_v4`]). Most
/// specific first; together the entries cover everything outside global unicast 2000::/3.
const BLOCKED_V6: &[V6Range] = &[
    v6(
        0x0064_ff9b_0001 << 80,
        48,
        "local-use NAT64",
        "64:ff9b:1::/48",
    ),
    v6(0x0100 << 112, 64, "discard-only", "100::/64"),
    v6(0x2001_0000 << 96, 32, "a Teredo tunnel", "2001::/32"),
    v6(0x2001_0002 << 96, 48, "benchmarking", "2001:2::/48"),
    v6(0x2001_0db8 << 96, 32, "documentation", "2001:db8::/32"),
    v6(0x3fff << 112, 20, "documentation", "3fff::/20"),
    v6(0xfc00 << 112, 7, "unique-local", "fc00::/7"),
    v6(0xfe80 << 112, 10, "link-local", "fe80::/10"),
    v6(0xfec0 << 112, 10, "site-local", "fec0::/10"),
    v6(0xff00 << 112, 8, "multicast", "ff00::/8"),
    // Not allocated for unicast at all (IANA): the rest of the space outside 2000::/3.
    v6(0, 8, "reserved", "::/8"),
    v6(0x0100 << 112, 8, "reserved", "100::/8"),
    v6(0x0200 << 112, 7, "reserved", "200::/7"),
    v6(0x0400 << 112, 6, "reserved", "400::/6"),
    v6(0x0800 << 112, 5, "reserved", "800::/5"),
    v6(0x1000 << 112, 4, "reserved", "1000::/4"),
    v6(0x4000 << 112, 2, "reserved", "4000::/2"),
    v6(0x8000 << 112, 2, "reserved", "8000::/2"),
    v6(0xc000 << 112, 3, "reserved", "c000::/3"),
    v6(0xe000 << 112, 4, "reserved", "e000::/4"),
    v6(0xf000 << 112, 5, "reserved", "f000::/5"),
    v6(0xf800 << 112, 6, "reserved", "f800::/6"),
    v6(0xfe00 << 112, 9, "reserved", "fe00::/9"),
];

/// Whether the top `prefix` bits of `addr` and `net` agree (`BITS` wide).
const fn in_prefix<const BITS: u32>(addr: u128, net: u128, prefix: u32) -> bool {
    prefix == 0 || (addr ^ net) >> (BITS - prefix) == 0
}

/// Why `ip` is refused by default, or `None` for a public address. Pure and allocation-free:
/// it runs for every resolved address.
pub fn blocked_range(ip: IpAddr) -> Option<BlockedRange> {
    match ip {
        IpAddr::V4(ip) => blocked_v4(ip),
        IpAddr::V6(ip) => blocked_v6(ip),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<BlockedRange> {
    let addr = u32::from(ip) as u128;
    BLOCKED_V4
        .iter()
        .find(|r| in_prefix::<32>(addr, r.net as u128, r.prefix))
        .map(|r| r.range)
}

fn blocked_v6(ip: Ipv6Addr) -> Option<BlockedRange> {
    let addr = u128::from(ip);
    // Before the embedded forms: both lie inside the IPv4-compatible range ::/96.
    match addr {
        0 => return Some(UNSPECIFIED_V6),
        1 => return Some(LOOPBACK_V6),
        _ => {}
    }
    if let Some((_, v4)) = embedded_v4(ip) {
        return blocked_v4(v4);
    }
    BLOCKED_V6
        .iter()
        .find(|r| in_prefix::<128>(addr, r.net, r.prefix))
        .map(|r| r.range)
}

/// The IPv4 address an IPv6 address stands for, with the name of the form: packets to these
/// end up at the IPv4 address (through the dual-stack socket, NAT64 or a 6to4 relay), so that
/// is what must be judged. `::` and `::1` are not IPv4-compatible addresses.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<(&'static str, Ipv4Addr)> {
    let addr = u128::from(ip);
    let low = Ipv4Addr::from(addr as u32);
    match addr >> 32 {
        0xffff => Some(("IPv4-mapped", low)),
        0 if addr > 1 => Some(("IPv4-compatible", low)),
        0xffff_0000 => Some(("IPv4-translated", low)),
        0x0064_ff9b_0000_0000_0000_0000 => Some(("NAT64", low)),
        _ if addr >> 112 == 0x2002 => Some(("6to4", Ipv4Addr::from((addr >> 80) as u32))),
        _ => None,
    }
}

/// One refused address and the range that refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockedAddress {
    pub ip: IpAddr,
    pub range: BlockedRange,
}

impl fmt::Display for BlockedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ip)?;
        if let IpAddr::V6(v6) = self.ip
            && let Some((form, v4)) = embedded_v4(v6)
        {
            write!(f, " ({form} {v4})")?;
        }
        write!(f, " is {}, in {}", self.range.kind, self.range.cidr)
    }
}

/// A delivery target refused by the guard: an IP literal, or a name all of whose addresses are
/// blocked (or, through a proxy, any of them). Travels inside reqwest's error when the
/// resolver refuses; find it with [`blocked_cause`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BlockedTarget {
    host: Option<String>,
    blocked: Vec<BlockedAddress>,
    /// Some of the name's addresses were allowed (refused as a whole only through a proxy).
    partial: bool,
}

impl BlockedTarget {
    /// The name that was resolved; `None` for an IP-literal URL.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    pub fn addresses(&self) -> &[BlockedAddress] {
        &self.blocked
    }
}

impl fmt::Display for BlockedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// DNS answers can be long; the first few say enough.
        const LISTED: usize = 4;
        match (&self.host, self.partial) {
            (Some(host), false) => write!(f, "{host} resolves only to blocked addresses: ")?,
            (Some(host), true) => write!(
                f,
                "{host} resolves to blocked addresses, refused as a whole through the egress proxy: "
            )?,
            (None, _) => {}
        }
        for (i, address) in self.blocked.iter().take(LISTED).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{address}")?;
        }
        if self.blocked.len() > LISTED {
            write!(f, "; and {} more", self.blocked.len() - LISTED)?;
        }
        write!(f, " ({HOW_TO_ALLOW})")
    }
}

/// Why a name could not be turned into addresses to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Blocked(#[from] BlockedTarget),
    #[error("resolving {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{host} has no addresses")]
    NoAddresses { host: String },
}

/// The refusal behind a failed request, if the guard refused it. reqwest wraps the resolver's
/// error a few levels deep, so the whole source chain is searched.
pub fn blocked_cause<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a BlockedTarget> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(blocked) = error.downcast_ref::<BlockedTarget>() {
            return Some(blocked);
        }
        current = error.source();
    }
    None
}

/// The policy: which addresses deliveries may connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressGuard {
    allow_all: bool,
    allowed: Vec<IpNet>,
}

impl AddressGuard {
    /// `allow_all` turns the guard off; `allowed` lets addresses in blocked ranges through.
    pub fn new(allow_all: bool, allowed: Vec<IpNet>) -> Self {
        Self { allow_all, allowed }
    }

    /// Checks one address against the policy.
    pub fn check(&self, ip: IpAddr) -> Result<(), BlockedAddress> {
        if self.allow_all {
            return Ok(());
        }
        match blocked_range(ip) {
            Some(range) if !self.explicitly_allowed(ip) => Err(BlockedAddress { ip, range }),
            _ => Ok(()),
        }
    }

    /// In an `--allow-cidr` range, by itself or by the IPv4 address it embeds (allowing
    /// 10.0.0.0/8 also allows `::ffff:10.0.0.5`, which reaches the same host).
    fn explicitly_allowed(&self, ip: IpAddr) -> bool {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(|(_, v4)| IpAddr::V4(v4)),
            IpAddr::V4(_) => None,
        };
        self.allowed
            .iter()
            .any(|net| net.contains(&ip) || embedded.is_some_and(|v4| net.contains(&v4)))
    }

    /// Checks a URL whose host is an IP literal (those are dialled without resolution). Names
    /// pass here: they are checked when they are resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), BlockedTarget> {
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(_)) | None => return Ok(()),
        };
        self.check(ip).map_err(|blocked| BlockedTarget {
            host: None,
            blocked: vec![blocked],
            partial: false,
        })
    }

    /// Resolves `host` with `lookup` and keeps the addresses the policy allows, in the order
    /// of the answer. Fails with [`ResolveError::Blocked`] when none is left.
    pub async fn resolve(
        &self,
        host: &str,
        lookup: &dyn Lookup,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        let answer = answer(host, lookup).await?;
        self.filter(host, answer)
    }

    /// Resolves `host` with `lookup` and requires every address of the answer to be allowed:
    /// the check of a target reached through a proxy, which may connect to any of them.
    pub async fn resolve_every(
        &self,
        host: &str,
        lookup: &dyn Lookup,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        let answer = answer(host, lookup).await?;
        let allowed = self.filter(host, answer.clone())?;
        if allowed.len() == answer.len() {
            return Ok(allowed);
        }
        let blocked = answer
            .into_iter()
            .filter_map(|ip| self.check(ip).err())
            .collect();
        Err(BlockedTarget {
            host: Some(host.to_owned()),
            blocked,
            partial: true,
        }
        .into())
    }

    fn filter(&self, host: &str, answer: Vec<IpAddr>) -> Result<Vec<IpAddr>, ResolveError> {
        if answer.is_empty() {
            return Err(ResolveError::NoAddresses {
                host: host.to_owned(),
            });
        }
        let mut blocked = Vec::new();
        let allowed: Vec<IpAddr> = answer
            .into_iter()
            .filter(|&ip| match self.check(ip) {
                Ok(()) => true,
                Err(refused) => {
                    blocked.push(refused);
                    false
                }
            })
            .collect();
        let refused = BlockedTarget {
            host: Some(host.to_owned()),
            blocked,
            partial: false,
        };
        if allowed.is_empty() {
            return Err(refused.into());
        }
        if !refused.blocked.is_empty() {
            tracing::debug!(%host, ?allowed, %refused, "dropped blocked addresses from a DNS answer");
        }
        Ok(allowed)
    }
}

impl fmt::Display for AddressGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow_all {
            return f.write_str("off (--allow-private-networks)");
        }
        f.write_str("blocking non-public addresses")?;
        for (i, net) in self.allowed.iter().enumerate() {
            f.write_str(if i == 0 { " except " } else { ", " })?;
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// The addresses `host` stands for: itself if it is an address, loopback for `localhost`,
/// otherwise what `lookup` answers.
async fn answer(host: &str, lookup: &dyn Lookup) -> Result<Vec<IpAddr>, ResolveError> {
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
fn is_localhost(host: &str) -> bool {
    const SUFFIX: &[u8] = b".localhost";
    let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
    host.eq_ignore_ascii_case(&SUFFIX[1..])
        || (host.len() > SUFFIX.len()
            && host[host.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX))
}

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

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        net::Ipv6Addr,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const PUBLIC_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34));
    const PUBLIC_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0, 0, 0, 0, 0, 0x1111));

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    /// A resolver that answers from a table and knows nothing else: no test asks real DNS.
    struct FakeLookup(HashMap<&'static str, Vec<IpAddr>>);

    impl Lookup for FakeLookup {
        fn lookup(&self, host: String) -> LookupFuture {
            let answer = self.0.get(host.as_str()).cloned().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "unknown to the test resolver")
            });
            Box::pin(async move { answer })
        }
    }

    fn fake_dns() -> FakeLookup {
        FakeLookup(HashMap::from([
            ("evil.example", vec![ip("10.0.0.5")]),
            ("metadata.example", vec![ip("169.254.169.254")]),
            ("ec2-v6.example", vec![ip("fd00:ec2::254")]),
            ("mapped.example", vec![ip("::ffff:127.0.0.1")]),
            ("cgnat.example", vec![ip("100.64.1.1")]),
            ("all-loopback.example", vec![ip("127.0.0.1"), ip("::1")]),
            ("rebind.example", vec![PUBLIC_V4, ip("127.0.0.1")]),
            ("public.example", vec![PUBLIC_V4, PUBLIC_V6]),
            ("mixed.example", vec![ip("127.0.0.1"), ip("10.0.0.5")]),
            ("empty.example", vec![]),
        ]))
    }

    /// What a delivery to `url` may connect to, checked the way the client checks it: IP
    /// literals on the URL, names while resolving them.
    async fn admit(guard: &AddressGuard, url: &str) -> Result<Vec<IpAddr>, String> {
        let url = Url::parse(url).map_err(|e| format!("unparseable: {e}"))?;
        guard.check_url(&url).map_err(|e| e.to_string())?;
        match url.host() {
            Some(Host::Ipv4(ip)) => Ok(vec![IpAddr::V4(ip)]),
            Some(Host::Ipv6(ip)) => Ok(vec![IpAddr::V6(ip)]),
            Some(Host::Domain(name)) => guard
                .resolve(name, &fake_dns())
                .await
                .map_err(|e| e.to_string()),
            None => Err("no host".into()),
        }
    }

    fn default_guard() -> AddressGuard {
        AddressGuard::default()
    }

    fn allow_all() -> AddressGuard {
        AddressGuard::new(true, Vec::new())
    }

    fn allow(cidrs: &[&str]) -> AddressGuard {
        let nets = cidrs
            .iter()
            .map(|c| parse_cidr(c).expect("test CIDR"))
            .collect();
        AddressGuard::new(false, nets)
    }

    /// Hostile targets: the URL, the address it must be understood as, and the range's kind.
    const HOSTILE: &[(&str, &str, &str)] = &[
        ("http://127.0.0.1/", "127.0.0.1", "loopback"),
        ("http://127.1/", "127.0.0.1", "loopback"),
        ("http://2130706433/", "127.0.0.1", "loopback"),
        ("http://0x7f.1/", "127.0.0.1", "loopback"),
        ("http://0177.0.0.1/", "127.0.0.1", "loopback"),
        ("http://0x7f000001/", "127.0.0.1", "loopback"),
        ("http://017700000001/", "127.0.0.1", "loopback"),
        (
            "http://127.255.255.254:8080/x",
            "127.255.255.254",
            "loopback",
        ),
        ("http://[::1]/", "::1", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", "loopback"),
        ("http://[::ffff:7f00:1]/", "::ffff:127.0.0.1", "loopback"),
        ("http://[::127.0.0.1]/", "::127.0.0.1", "loopback"),
        ("http://[::ffff:0:7f00:1]/", "::ffff:0:7f00:1", "loopback"),
        ("http://[2002:7f00:1::]/", "2002:7f00:1::", "loopback"),
        ("http://10.0.0.1/", "10.0.0.1", "private"),
        ("http://172.16.0.1/", "172.16.0.1", "private"),
        ("http://172.31.255.255/", "172.31.255.255", "private"),
        ("http://192.168.1.1/", "192.168.1.1", "private"),
        ("http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1", "private"),
        ("http://[64:ff9b::a00:1]/", "64:ff9b::a00:1", "private"),
        ("http://100.64.0.1/", "100.64.0.1", "carrier-grade NAT"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
            "link-local",
        ),
        ("http://2852039166/", "169.254.169.254", "link-local"),
        ("http://0xa9fea9fe/", "169.254.169.254", "link-local"),
        (
            "http://0251.0376.0251.0376/",
            "169.254.169.254",
            "link-local",
        ),
        (
            "https://[::ffff:a9fe:a9fe]/",
            "::ffff:169.254.169.254",
            "link-local",
        ),
        ("http://[fe80::1]/", "fe80::1", "link-local"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254", "unique-local"),
        ("http://[fc00::1]/", "fc00::1", "unique-local"),
        ("http://[fec0::1]/", "fec0::1", "site-local"),
        ("http://224.0.0.1/", "224.0.0.1", "multicast"),
        (
            "http://239.255.255.250:1900/",
            "239.255.255.250",
            "multicast",
        ),
        ("http://[ff02::1]/", "ff02::1", "multicast"),
        ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
        ("http://0/", "0.0.0.0", "unspecified"),
        ("http://[::]/", "::", "unspecified"),
        ("http://255.255.255.255/", "255.255.255.255", "broadcast"),
        ("http://192.0.0.1/", "192.0.0.1", "reserved"),
        ("http://240.0.0.1/", "240.0.0.1", "reserved"),
        ("http://192.0.2.1/", "192.0.2.1", "documentation"),
        ("http://198.51.100.7/", "198.51.100.7", "documentation"),
        ("http://203.0.113.9/", "203.0.113.9", "documentation"),
        ("http://[2001:db8::1]/", "2001:db8::1", "documentation"),
        ("http://198.18.0.1/", "198.18.0.1", "benchmarking"),
        ("http://198.19.255.255/", "198.19.255.255", "benchmarking"),
        ("http://[100::1]/", "100::1", "discard-only"),
        ("http://[2001::1]/", "2001::1", "a Teredo tunnel"),
        ("http://localhost/", "127.0.0.1", "loopback"),
        ("http://localhost./", "127.0.0.1", "loopback"),
        ("http://LOCALHOST:8080/", "127.0.0.1", "loopback"),
        ("http://api.localhost/", "127.0.0.1", "loopback"),
        ("http://evil.example/", "10.0.0.5", "private"),
        ("http://metadata.example/", "169.254.169.254", "link-local"),
        ("http://ec2-v6.example/", "fd00:ec2::254", "unique-local"),
        ("http://mapped.example/", "::ffff:127.0.0.1", "loopback"),
        ("http://cgnat.example/", "100.64.1.1", "carrier-grade NAT"),
        ("http://all-loopback.example/", "::1", "loopback"),
    ];

    #[tokio::test]
    async fn hostile_targets_are_refused_by_default_and_allowed_when_private_networks_are() {
        assert!(HOSTILE.len() >= 30);
        for &(url, address, kind) in HOSTILE {
            let refused = admit(&default_guard(), url)
                .await
                .expect_err(&format!("{url} must be refused"));
            let expected = format!("{} ", ip(address));
            assert!(
                refused.contains(&expected) && refused.contains(&format!(" is {kind}, in ")),
                "{url}: {refused}"
            );
            assert!(refused.ends_with(&format!("({HOW_TO_ALLOW})")), "{refused}");

            let allowed = admit(&allow_all(), url)
                .await
                .unwrap_or_else(|e| panic!("{url} with --allow-private-networks: {e}"));
            assert!(allowed.contains(&ip(address)), "{url}: {allowed:?}");
        }
    }

    #[tokio::test]
    async fn odd_ipv4_spellings_are_normalised_before_the_check() {
        for url in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://0x7F.0.0.1/",
        ] {
            let parsed = Url::parse(url).expect("url");
            assert_eq!(
                parsed.host(),
                Some(Host::Ipv4(Ipv4Addr::LOCALHOST)),
                "{url}"
            );
            assert_eq!(parsed.host_str(), Some("127.0.0.1"), "{url}");
        }
    }

    #[tokio::test]
    async fn public_targets_are_allowed() {
        for (url, expected) in [
            ("http://93.184.216.34/", vec![PUBLIC_V4]),
            ("https://[2606:4700::1111]/hook", vec![PUBLIC_V6]),
            ("http://1572395042/", vec![PUBLIC_V4]),
            (
                "http://[::ffff:93.184.216.34]/",
                vec![ip("::ffff:93.184.216.34")],
            ),
            (
                "http://[64:ff9b::5db8:d822]/",
                vec![ip("64:ff9b::5db8:d822")],
            ),
            ("https://public.example/", vec![PUBLIC_V4, PUBLIC_V6]),
        ] {
            assert_eq!(admit(&default_guard(), url).await, Ok(expected), "{url}");
        }
    }

    /// Decision: a mixed answer is filtered, not refused. Only checked addresses reach the
    /// connector, so 127.0.0.1 is never dialled; the public address still works.
    #[tokio::test]
    async fn a_mixed_answer_is_filtered_to_its_allowed_addresses() {
        assert_eq!(
            admit(&default_guard(), "http://rebind.example/").await,
            Ok(vec![PUBLIC_V4])
        );
        assert_eq!(
            admit(&allow(&["10.0.0.0/8"]), "http://mixed.example/").await,
            Ok(vec![ip("10.0.0.5")])
        );
        let refused = admit(&default_guard(), "http://mixed.example/")
            .await
            .expect_err("nothing allowed is left");
        assert_eq!(
            refused,
            "mixed.example resolves only to blocked addresses: 127.0.0.1 is loopback, in \
             127.0.0.0/8; 10.0.0.5 is private, in 10.0.0.0/8 (blocked; allow with \
             --allow-private-networks or --allow-cidr)"
        );
    }

    #[tokio::test]
    async fn allow_cidr_lets_only_its_ranges_through() {
        let guard = allow(&["10.0.0.0/8"]);
        assert_eq!(
            admit(&guard, "http://evil.example/").await,
            Ok(vec![ip("10.0.0.5")])
        );
        assert!(admit(&guard, "http://10.0.0.5/").await.is_ok());
        assert!(admit(&guard, "http://[::ffff:10.0.0.5]/").await.is_ok());
        for url in [
            "http://127.0.0.1/",
            "http://localhost/",
            "http://169.254.169.254/",
            "http://192.168.0.1/",
            "http://[fd00::1]/",
        ] {
            assert!(admit(&guard, url).await.is_err(), "{url} is outside 10/8");
        }
        // localhost answers both loopback addresses; a v4-only allowance keeps the v4 one.
        assert_eq!(
            admit(&allow(&["127.0.0.0/8"]), "http://localhost/").await,
            Ok(vec![ip("127.0.0.1")])
        );
        assert_eq!(
            admit(&allow(&["fd00:ec2::254"]), "http://[fd00:ec2::254]/").await,
            Ok(vec![ip("fd00:ec2::254")])
        );
    }

    #[tokio::test]
    async fn resolution_failures_are_not_refusals() {
        let guard = default_guard();
        let unknown = guard.resolve("nowhere.example", &fake_dns()).await;
        assert!(
            matches!(unknown, Err(ResolveError::Lookup { .. })),
            "{unknown:?}"
        );
        let empty = guard.resolve("empty.example", &fake_dns()).await;
        assert!(
            matches!(empty, Err(ResolveError::NoAddresses { .. })),
            "{empty:?}"
        );
    }

    #[test]
    fn blocked_range_table() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("127.0.0.1", Some(("loopback", "127.0.0.0/8"))),
            ("10.255.255.255", Some(("private", "10.0.0.0/8"))),
            ("172.16.0.0", Some(("private", "172.16.0.0/12"))),
            ("192.168.255.255", Some(("private", "192.168.0.0/16"))),
            (
                "100.127.255.255",
                Some(("carrier-grade NAT", "100.64.0.0/10")),
            ),
            ("169.254.169.254", Some(("link-local", "169.254.0.0/16"))),
            ("0.1.2.3", Some(("unspecified", "0.0.0.0/8"))),
            ("255.255.255.255", Some(("broadcast", "255.255.255.255/32"))),
            ("255.255.255.254", Some(("reserved", "240.0.0.0/4"))),
            ("239.1.1.1", Some(("multicast", "224.0.0.0/4"))),
            ("192.88.99.1", Some(("reserved", "192.88.99.0/24"))),
            ("::", Some(("unspecified", "::/128"))),
            ("::1", Some(("loopback", "::1/128"))),
            ("::2", Some(("unspecified", "0.0.0.0/8"))),
            ("::ffff:192.168.1.1", Some(("private", "192.168.0.0/16"))),
            ("64:ff9b::a9fe:a9fe", Some(("link-local", "169.254.0.0/16"))),
            ("64:ff9b:1::1", Some(("local-use NAT64", "64:ff9b:1::/48"))),
            ("2002:c0a8:101::1", Some(("private", "192.168.0.0/16"))),
            ("2001:2::1", Some(("benchmarking", "2001:2::/48"))),
            ("3fff::1", Some(("documentation", "3fff::/20"))),
            ("fdff:ffff::1", Some(("unique-local", "fc00::/7"))),
            ("febf::1", Some(("link-local", "fe80::/10"))),
            ("ffff::1", Some(("multicast", "ff00::/8"))),
            ("1::1", Some(("reserved", "::/8"))),
            ("fe00::1", Some(("reserved", "fe00::/9"))),
            ("4000::1", Some(("reserved", "4000::/2"))),
            // Just outside the blocked ranges.
            ("9.255.255.255", None),
            ("11.0.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("126.255.255.255", None),
            ("128.0.0.0", None),
            ("169.253.255.255", None),
            ("169.255.0.0", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.0.1.0", None),
            ("192.0.3.0", None),
            ("192.167.255.255", None),
            ("192.169.0.0", None),
            ("198.17.255.255", None),
            ("198.20.0.0", None),
            ("223.255.255.255", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            ("2606:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("2001:1::1", None),
            ("3fff:1000::1", None),
            ("::ffff:93.184.216.34", None),
            ("::93.184.216.34", None),
            ("64:ff9b::5db8:d822", None),
            ("2002:5db8:d822::1", None),
        ];
        for &(address, expected) in cases {
            let got = blocked_range(ip(address)).map(|r| (r.kind, r.cidr));
            assert_eq!(got, expected, "{address}");
        }
    }

    #[test]
    fn everything_outside_global_unicast_is_blocked() {
        for top in 0..=u16::MAX {
            let address = Ipv6Addr::from(((top as u128) << 112) | (0x1234 << 96) | 1);
            let global = (0x2000..=0x3fff).contains(&top);
            assert_eq!(
                blocked_range(IpAddr::V6(address)).is_none(),
                global,
                "{address}"
            );
        }
    }

    #[test]
    fn table_cidrs_match_their_bits() {
        for r in BLOCKED_V4 {
            let net: ipnet::Ipv4Net = r.range.cidr.parse().expect(r.range.cidr);
            assert_eq!(
                (u32::from(net.network()), net.prefix_len() as u32),
                (r.net, r.prefix)
            );
        }
        for r in BLOCKED_V6 {
            let net: ipnet::Ipv6Net = r.range.cidr.parse().expect(r.range.cidr);
            assert_eq!(
                (u128::from(net.network()), net.prefix_len() as u32),
                (r.net, r.prefix)
            );
        }
    }

    #[test]
    fn messages_name_the_address_and_the_range() {
        let literal = |url: &str| {
            default_guard()
                .check_url(&Url::parse(url).expect("url"))
                .expect_err("blocked")
                .to_string()
        };
        assert_eq!(
            literal("http://169.254.169.254/latest/meta-data/"),
            "169.254.169.254 is link-local, in 169.254.0.0/16 (blocked; allow with \
             --allow-private-networks or --allow-cidr)"
        );
        assert_eq!(
            literal("http://[::ffff:169.254.169.254]/"),
            "::ffff:169.254.169.254 (IPv4-mapped 169.254.169.254) is link-local, in \
             169.254.0.0/16 (blocked; allow with --allow-private-networks or --allow-cidr)"
        );
    }

    #[test]
    fn allow_cidr_values_parse_or_fail_naming_the_value() {
        assert_eq!(
            parse_cidr("10.0.0.0/8").map(|n| n.to_string()).ok(),
            Some("10.0.0.0/8".into())
        );
        assert_eq!(
            parse_cidr(" 10.1.2.3/8").map(|n| n.to_string()).ok(),
            Some("10.0.0.0/8".into())
        );
        assert_eq!(
            parse_cidr("fd00::/8").map(|n| n.to_string()).ok(),
            Some("fd00::/8".into())
        );
        assert_eq!(
            parse_cidr("127.0.0.1").map(|n| n.to_string()).ok(),
            Some("127.0.0.1/32".into())
        );
        for bad in ["10.0.0.0/33", "10.0.0/8", "", "localhost", "fd00::/129"] {
            let error = parse_cidr(bad).expect_err(bad).to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn flags_and_lists_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            guard: AddressGuardArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
                .map(|cli| cli.guard.guard())
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse(&[]), Ok(default_guard()));
        assert_eq!(parse(&["--allow-private-networks"]), Ok(allow_all()));
        assert_eq!(
            parse(&[
                "--allow-cidr",
                "10.0.0.0/8",
                "--allow-cidr",
                "fd00::/8,127.0.0.1"
            ]),
            Ok(allow(&["10.0.0.0/8", "fd00::/8", "127.0.0.1/32"]))
        );
        assert_eq!(parse(&["--allow-cidr", ""]), Ok(default_guard()));
        let error = parse(&["--allow-cidr", "10.0.0.0/8,10.0.0.0/40"]).expect_err("bad");
        assert!(error.contains("\"10.0.0.0/40\" is not a CIDR"), "{error}");
    }

    #[test]
    fn localhost_names() {
        for name in [
            "localhost",
            "localhost.",
            "LocalHost",
            "a.localhost",
            "x.y.localhost.",
        ] {
            assert!(is_localhost(name), "{name}");
        }
        for name in [
            "localhost.example",
            "notlocalhost",
            "xlocalhost",
            "ülocalhost",
            "",
        ] {
            assert!(!is_localhost(name), "{name}");
        }
    }

    /// A loopback HTTP server that counts connections and answers 204.
    async fn counting_server() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = [0; 4096];
                    let _ = socket.read(&mut request).await;
                    let _ = socket
                        .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        (port, connections)
    }

    fn client(guard: AddressGuard) -> GuardedClient {
        proxied_client(guard, None)
    }

    fn proxied_client(guard: AddressGuard, proxy: Option<&str>) -> GuardedClient {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let lookup = FakeLookup(HashMap::from([
            ("loopback.test", vec![ip("127.0.0.1")]),
            ("proxy.test", vec![ip("127.0.0.1")]),
            ("public.test", vec![PUBLIC_V4]),
            ("rebind.test", vec![PUBLIC_V4, ip("127.0.0.1")]),
        ]));
        let proxy = proxy.map(|p| EgressProxy::parse(p).expect("proxy URL"));
        GuardedClient::build(
            reqwest::Client::builder(),
            guard,
            Arc::new(lookup),
            proxy.as_ref(),
        )
        .expect("client")
    }

    /// Through reqwest, on loopback only: the resolver's refusal surfaces in the error chain,
    /// nothing connects, and an allowance lets the same requests through.
    #[tokio::test]
    async fn the_client_refuses_before_connecting() {
        let (port, connections) = counting_server().await;
        let guarded = client(default_guard());

        let literal = guarded
            .post(&format!("http://127.0.0.1:{port}/"))
            .await
            .expect_err("IP literal refused before sending");
        assert!(
            matches!(&literal, ResolveError::Blocked(b) if b.host().is_none()),
            "{literal:?}"
        );

        for url in [
            format!("http://loopback.test:{port}/"),
            format!("http://localhost:{port}/"),
        ] {
            let error = guarded
                .post(&url)
                .await
                .expect("names are checked while resolving")
                .send()
                .await
                .expect_err("resolver refuses");
            let blocked = blocked_cause(&error)
                .unwrap_or_else(|| panic!("{url}: no BlockedTarget in {error:?}"));
            assert!(
                blocked.to_string().contains("127.0.0.1 is loopback"),
                "{blocked}"
            );
        }
        assert_eq!(connections.load(Ordering::SeqCst), 0);

        let allowed = client(allow(&["127.0.0.0/8"]));
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://loopback.test:{port}/"),
            format!("http://localhost:{port}/"),
        ] {
            let response = allowed.post(&url).await.expect("allowed").send().await;
            assert_eq!(
                response.map(|r| r.status().as_u16()).ok(),
                Some(204),
                "{url}"
            );
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn other_errors_are_not_mistaken_for_refusals() {
        let guarded = client(default_guard());
        let error = guarded
            .post("http://nowhere.test/")
            .await
            .expect("a name")
            .send()
            .await
            .expect_err("unknown name");
        assert!(blocked_cause(&error).is_none(), "{error:?}");
        assert!(error.is_connect(), "{error:?}");
    }

    /// Through the egress proxy (here the counting server, on loopback, which the guard would
    /// refuse as a target): the proxy's own address is allowed, targets are checked before
    /// the proxy is asked, and a name with any blocked address is refused as a whole.
    #[tokio::test]
    async fn the_egress_proxy_is_allowed_and_targets_are_checked_before_it() {
        let (port, connections) = counting_server().await;
        for proxy in [
            format!("http://proxy.test:{port}"),
            format!("http://127.0.0.1:{port}"),
        ] {
            let guarded = proxied_client(default_guard(), Some(&proxy));
            for target in [
                "http://loopback.test/",
                "http://localhost/",
                "http://10.1.2.3/",
                "http://rebind.test/",
            ] {
                let refused = guarded
                    .post(target)
                    .await
                    .expect_err("blocked target refused before the proxy");
                assert!(
                    matches!(refused, ResolveError::Blocked(_)),
                    "{target}: {refused:?}"
                );
            }
            let partial = guarded.post("http://rebind.test/").await.err();
            assert!(
                partial
                    .map(|e| e.to_string())
                    .unwrap_or_default()
                    .contains("refused as a whole through the egress proxy"),
            );
            let unknown = guarded.post("http://nowhere.test/").await.err();
            assert!(
                matches!(unknown, Some(ResolveError::Lookup { .. })),
                "{unknown:?}"
            );
            assert_eq!(connections.load(Ordering::SeqCst), 0, "{proxy}");

            let response = guarded
                .post("http://public.test/hook")
                .await
                .expect("a public target is handed to the proxy")
                .send()
                .await;
            assert_eq!(
                response.map(|r| r.status().as_u16()).ok(),
                Some(204),
                "{proxy}"
            );
            assert_eq!(connections.swap(0, Ordering::SeqCst), 1, "{proxy}");
        }
    }
}
