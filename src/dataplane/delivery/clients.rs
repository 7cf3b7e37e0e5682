//! Outbound HTTP clients: one for endpoints that trust the system roots, and one per CA bundle
//! endpoints name (`spec.tls.caBundleRef`), all with the same settings, address guard and
//! egress proxy. Certificates are always verified; there is no switch to turn that off.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{
    address_guard::{AddressGuard, AddressGuardArgs, GuardedClient, SystemLookup},
    egress_proxy::{EgressProxy, EgressProxyParser},
};
use crate::model::credentials::CaBundle;

/// How deliveries leave the process: the address guard, the egress proxy and the https rule.
/// Shared by `local` and `deliver`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutboundArgs {
    /// `--allow-private-networks`, `--allow-cidr`: where deliveries may connect.
    #[command(flatten)]
    pub address_guard: AddressGuardArgs,
    /// Send every delivery through this HTTP(S) forward proxy, e.g.
    /// `http://egress.internal:3128`, so deliveries leave from fixed addresses. Targets are
    /// still checked by the address guard first; the proxy's own address is allowed.
    #[arg(long, env = "EGRESS_PROXY", value_name = "URL", value_parser = EgressProxyParser)]
    pub egress_proxy: Option<EgressProxy>,
    /// Refuse `http://` endpoint URLs (reason HttpsRequired); only https is delivered.
    #[arg(long, env = "REQUIRE_HTTPS")]
    pub require_https: bool,
}

impl OutboundArgs {
    /// The process's clients, their settings logged once at start-up.
    pub fn clients(&self) -> Result<Clients, reqwest::Error> {
        let clients = Clients::new(self.address_guard.guard(), self.egress_proxy.clone())?;
        clients.log_settings(self.require_https);
        Ok(clients)
    }
}

/// The clients of one process, built on demand and shared by every worker.
pub struct Clients {
    guard: AddressGuard,
    proxy: Option<EgressProxy>,
    default: GuardedClient,
    by_ca: Mutex<HashMap<[u8; 32], GuardedClient>>,
}

impl Clients {
    pub fn new(guard: AddressGuard, proxy: Option<EgressProxy>) -> Result<Self, reqwest::Error> {
        let default = build(&guard, proxy.as_ref(), None)?;
        Ok(Self {
            guard,
            proxy,
            default,
            by_ca: Mutex::default(),
        })
    }

    pub fn guard(&self) -> &AddressGuard {
        &self.guard
    }

    pub fn proxy(&self) -> Option<&EgressProxy> {
        self.proxy.as_ref()
    }

    /// Logs how deliveries leave the process (no credentials).
    fn log_settings(&self, require_https: bool) {
        let proxy = self
            .proxy
            .as_ref()
            .map_or_else(|| "none".to_owned(), ToString::to_string);
        tracing::info!(guard = %self.guard, egress_proxy = %proxy, require_https, "outbound deliveries");
    }

    /// The client trusting `ca` (the system roots when `None`); built once per bundle.
    pub fn get(&self, ca: Option<&CaBundle>) -> Result<GuardedClient, String> {
        let Some(ca) = ca else {
            return Ok(self.default.clone());
        };
        let mut cache = self.by_ca.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = cache.get(&ca.fingerprint()) {
            return Ok(client.clone());
        }
        let client = build(&self.guard, self.proxy.as_ref(), Some(ca))
            .map_err(|e| format!("building an HTTP client for the CA bundle: {e}"))?;
        cache.insert(ca.fingerprint(), client.clone());
        Ok(client)
    }

    /// Forgets the clients of bundles no endpoint uses any more.
    pub fn retain(&self, used: &HashSet<[u8; 32]>) {
        self.by_ca
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|fingerprint, _| used.contains(fingerprint));
    }
}

/// No redirects (a 3xx is a failure), pooled keep-alive, and every address it connects to
/// checked by `guard`; with `ca`, only that bundle's certificates are trusted.
fn build(
    guard: &AddressGuard,
    proxy: Option<&EgressProxy>,
    ca: Option<&CaBundle>,
) -> Result<GuardedClient, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(30));
    if let Some(ca) = ca {
        let certificates = ca
            .certificates()
            .map(reqwest::Certificate::from_der)
            .collect::<Result<Vec<_>, _>>()?;
        builder = builder.tls_certs_only(certificates);
    }
    GuardedClient::build(builder, guard.clone(), Arc::new(SystemLookup), proxy)
}
