//! Routing tables: which endpoints of a tenant receive an event type.
//!
//! [`TenantRoutes`] is the serialisable form the control plane (or local mode) publishes;
//! [`CompiledRoutes`] is the indexed form routers match against.

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{
    endpoint::EndpointConfig,
    event_type::{Pattern, PatternError, PatternMatcher},
};

/// One subscription, already validated: the endpoint it feeds and its event-type patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub subscription: String,
    pub endpoint: String,
    pub event_types: Vec<String>,
}

/// Everything the data plane needs for one tenant. Only valid endpoints and routes appear here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantRoutes {
    pub tenant: String,
    /// Sorted by name.
    pub endpoints: Vec<EndpointConfig>,
    pub routes: Vec<Route>,
}

impl TenantRoutes {
    pub fn endpoint(&self, name: &str) -> Option<&EndpointConfig> {
        self.endpoints
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.endpoints[i])
    }
}

/// A tenant's routes indexed for lookups.
#[derive(Debug)]
pub struct CompiledTenant {
    pub routes: Arc<TenantRoutes>,
    matcher: PatternMatcher<u32>,
}

impl CompiledTenant {
    /// Indexes `routes`. Routes whose endpoint is unknown or whose pattern is invalid were
    /// rejected before publication; if one slips through it is skipped, never fatal.
    pub fn compile(routes: Arc<TenantRoutes>) -> Result<Self, PatternError> {
        let mut matcher = PatternMatcher::default();
        for route in &routes.routes {
            let Ok(index) = routes
                .endpoints
                .binary_search_by(|e| e.name.as_str().cmp(&route.endpoint))
            else {
                continue;
            };
            for pattern in &route.event_types {
                matcher.insert(&Pattern::parse(pattern)?, index as u32);
            }
        }
        Ok(Self { routes, matcher })
    }

    /// Endpoints subscribed to `event_type`, each once.
    pub fn endpoints_for(&self, event_type: &str) -> impl Iterator<Item = &EndpointConfig> {
        self.matcher
            .matches(event_type)
            .into_iter()
            .map(|i| &self.routes.endpoints[i as usize])
    }
}

/// Compiled routes of every tenant this process serves.
#[derive(Debug, Default)]
pub struct CompiledRoutes {
    /// Shared so a new snapshot after one tenant's change reuses every other tenant's index.
    pub tenants: BTreeMap<String, Arc<CompiledTenant>>,
}

impl CompiledRoutes {
    pub fn tenant(&self, tenant: &str) -> Option<&CompiledTenant> {
        self.tenants.get(tenant).map(Arc::as_ref)
    }

    pub fn endpoints(&self) -> impl Iterator<Item = (&str, &EndpointConfig)> {
        self.tenants
            .iter()
            .flat_map(|(t, c)| c.routes.endpoints.iter().map(move |e| (t.as_str(), e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::{RetryPolicy, SecretLocation};
    use std::time::Duration;

    fn endpoint(name: &str) -> EndpointConfig {
        EndpointConfig {
            name: name.into(),
            url: format!("https://{name}.example/hook"),
            secret: SecretLocation {
                name: format!("{name}-signing"),
                key: "secret".into(),
            },
            headers: Default::default(),
            timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            rate_limit: None,
            max_in_flight: 10,
            paused: false,
            ca_bundle: None,
            auth: None,
        }
    }

    #[test]
    fn fan_out_matches_each_endpoint_once() {
        let routes = TenantRoutes {
            tenant: "acme".into(),
            endpoints: vec![endpoint("a"), endpoint("b"), endpoint("c")],
            routes: vec![
                Route {
                    subscription: "s1".into(),
                    endpoint: "a".into(),
                    event_types: vec!["order.*".into(), "order.paid".into()],
                },
                Route {
                    subscription: "s2".into(),
                    endpoint: "b".into(),
                    event_types: vec!["order.>".into()],
                },
                Route {
                    subscription: "s3".into(),
                    endpoint: "c".into(),
                    event_types: vec!["invoice.paid".into()],
                },
                Route {
                    subscription: "s4".into(),
                    endpoint: "gone".into(),
                    event_types: vec![">".into()],
                },
            ],
        };
        let compiled = CompiledTenant::compile(Arc::new(routes)).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = compiled
            .endpoints_for("order.paid")
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(compiled.endpoints_for("invoice.paid").count(), 1);
        assert_eq!(compiled.endpoints_for("shipment.sent").count(), 0);
    }
}
