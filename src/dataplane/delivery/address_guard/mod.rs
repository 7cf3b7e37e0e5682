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
//! - Host names are checked inside DNS resolution: the client's resolver
//!   ([`GuardedResolver`](client::GuardedResolver)) hands the connector only the addresses it
//!   checked. The connection therefore goes to a checked address, and there is no window
//!   between check and connect for a second DNS answer to change it (DNS rebinding). Pooled
//!   connections were checked when they were opened.
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
//!
//! The module holds the policy ([`AddressGuard`], its flags and its refusals); `ranges` says
//! which addresses are not the public Internet, `lookup` turns a name into the addresses to
//! judge, and `client` builds the guard into reqwest.

mod client;
mod lookup;
mod ranges;
#[cfg(test)]
mod tests;

pub use client::GuardedClient;
pub use lookup::{Lookup, LookupFuture, SystemLookup};
pub use ranges::{BlockedRange, blocked_range, embedded_v4};

use std::{error::Error as StdError, fmt, io, net::IpAddr};

use ipnet::IpNet;
use url::{Host, Url};

use lookup::answer;

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
