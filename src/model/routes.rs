//! Routing tables: which endpoints of a tenant receive an event type.
//!
//! [`TenantRoutes`] is the serialisable form the control plane (or local mode) publishes;
//! [`CompiledRoutes`] is the indexed form routers match against: patterns in a token trie,
//! filters and payload schemas compiled once per change of the tenant's routes.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    endpoint::EndpointConfig,
    event_type::{Pattern, PatternError, PatternMatcher},
    filter::{EventView, Filter, FilterError},
    payload_schema::{CompiledSchema, PayloadSchema},
};

/// One subscription, already validated: the endpoint it feeds, its event-type patterns and
/// its payload filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub subscription: String,
    pub endpoint: String,
    pub event_types: Vec<String>,
    /// As written in the subscription; see [`Filter`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
}

/// Everything the data plane needs for one tenant. Only valid endpoints and routes appear here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantRoutes {
    pub tenant: String,
    /// Sorted by name.
    pub endpoints: Vec<EndpointConfig>,
    pub routes: Vec<Route>,
    /// Payload schemas of the tenant's event types that have one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<PayloadSchema>,
}

impl TenantRoutes {
    pub fn endpoint(&self, name: &str) -> Option<&EndpointConfig> {
        self.endpoints
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.endpoints[i])
    }
}

/// Why published routes could not be indexed (they are validated before publication).
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("subscription {subscription:?}: filter{error}")]
    Filter {
        subscription: String,
        error: FilterError,
    },
    #[error("schema of event type {event_type:?}: {message}")]
    Schema { event_type: String, message: String },
}

/// A route as the router evaluates it.
#[derive(Debug)]
struct Target {
    endpoint: u32,
    filter: Option<Filter>,
}

/// A tenant's routes indexed for lookups.
#[derive(Debug)]
pub struct CompiledTenant {
    pub routes: Arc<TenantRoutes>,
    /// Pattern -> index into `targets` (and `routes.routes`).
    matcher: PatternMatcher<u32>,
    targets: Vec<Target>,
    schemas: HashMap<String, CompiledSchema>,
}

impl CompiledTenant {
    /// Indexes `routes`. A route whose endpoint is unknown was rejected before publication; if
    /// one slips through it is skipped, never fatal.
    pub fn compile(routes: Arc<TenantRoutes>) -> Result<Self, RoutesError> {
        let mut matcher = PatternMatcher::default();
        let mut targets = Vec::with_capacity(routes.routes.len());
        for route in &routes.routes {
            let index = targets.len() as u32;
            let endpoint = routes
                .endpoints
                .binary_search_by(|e| e.name.as_str().cmp(&route.endpoint));
            let filter = route
                .filter
                .as_ref()
                .map(Filter::parse)
                .transpose()
                .map_err(|error| RoutesError::Filter {
                    subscription: route.subscription.clone(),
                    error,
                })?;
            targets.push(Target {
                endpoint: endpoint.unwrap_or_default() as u32,
                filter,
            });
            if endpoint.is_err() {
                continue;
            }
            for pattern in &route.event_types {
                matcher.insert(&Pattern::parse(pattern)?, index);
            }
        }
        let schemas = routes
            .schemas
            .iter()
            .map(|s| {
                CompiledSchema::compile(&s.schema, s.on_invalid)
                    .map(|compiled| (s.event_type.clone(), compiled))
                    .map_err(|message| RoutesError::Schema {
                        event_type: s.event_type.clone(),
                        message,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            routes,
            matcher,
            targets,
            schemas,
        })
    }

    /// Endpoints subscribed to `event_type`, each once, before filters.
    pub fn endpoints_for(&self, event_type: &str) -> impl Iterator<Item = &EndpointConfig> {
        self.subscribed(event_type).endpoints().into_iter()
    }

    /// The subscriptions whose patterns select `event_type`.
    pub fn subscribed(&self, event_type: &str) -> Subscribed<'_> {
        Subscribed {
            tenant: self,
            routes: self.matcher.matches(event_type),
        }
    }

    /// The payload schema of `event_type`, if its EventType has one.
    pub fn schema(&self, event_type: &str) -> Option<&CompiledSchema> {
        self.schemas.get(event_type)
    }
}

/// The routes an event type selects, before payload filters.
#[derive(Debug)]
pub struct Subscribed<'a> {
    tenant: &'a CompiledTenant,
    /// Sorted route indexes.
    routes: Vec<u32>,
}

/// Where an event goes once filters are applied.
#[derive(Debug, Default, PartialEq)]
pub struct Selection<'a> {
    /// Each once, in name order.
    pub endpoints: Vec<&'a EndpointConfig>,
    /// Subscriptions whose filter turned the event down.
    pub filtered_out: Vec<&'a str>,
}

impl<'a> Subscribed<'a> {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// True when a selected subscription has a payload filter.
    pub fn has_filters(&self) -> bool {
        self.routes
            .iter()
            .any(|&r| self.tenant.targets[r as usize].filter.is_some())
    }

    /// Every subscribed endpoint, each once, filters ignored.
    pub fn endpoints(&self) -> Vec<&'a EndpointConfig> {
        let mut indexes: Vec<u32> = self
            .routes
            .iter()
            .map(|&r| self.tenant.targets[r as usize].endpoint)
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        self.resolve(indexes)
    }

    /// An endpoint receives the event when any of its selected subscriptions lets it through.
    /// Every filter is evaluated, so each subscription that turned the event down is reported.
    pub fn select<E: EventView + ?Sized>(&self, event: &E) -> Selection<'a> {
        let tenant = self.tenant;
        let mut passed = Vec::new();
        let mut filtered_out = Vec::new();
        for &r in &self.routes {
            let target = &tenant.targets[r as usize];
            match &target.filter {
                Some(filter) if !filter.matches(event) => {
                    filtered_out.push(tenant.routes.routes[r as usize].subscription.as_str());
                }
                _ => passed.push(target.endpoint),
            }
        }
        passed.sort_unstable();
        passed.dedup();
        Selection {
            endpoints: self.resolve(passed),
            filtered_out,
        }
    }

    fn resolve(&self, indexes: Vec<u32>) -> Vec<&'a EndpointConfig> {
        indexes
            .into_iter()
            .map(|i| &self.tenant.routes.endpoints[i as usize])
            .collect()
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

    /// Subscriptions routed, over every tenant.
    pub fn subscription_count(&self) -> usize {
        self.tenants.values().map(|t| t.routes.routes.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        endpoint::{RetryPolicy, SecretLocation},
        payload_schema::OnInvalid,
    };
    use serde_json::json;
    use std::time::Duration;

    struct Body(Option<Value>);

    impl EventView for Body {
        fn body(&self) -> Option<&Value> {
            self.0.as_ref()
        }
        fn header(&self, _: &str) -> Option<&str> {
            None
        }
    }

    fn route(subscription: &str, endpoint: &str, filter: Option<Value>) -> Route {
        Route {
            subscription: subscription.into(),
            endpoint: endpoint.into(),
            event_types: vec!["order.paid".into()],
            filter,
        }
    }

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
            format: Default::default(),
            ca_bundle: None,
            auth: None,
            ordering: Default::default(),
            partition_key_header: None,
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
                    filter: None,
                },
                Route {
                    subscription: "s2".into(),
                    endpoint: "b".into(),
                    event_types: vec!["order.>".into()],
                    filter: None,
                },
                Route {
                    subscription: "s3".into(),
                    endpoint: "c".into(),
                    event_types: vec!["invoice.paid".into()],
                    filter: None,
                },
                Route {
                    subscription: "s4".into(),
                    endpoint: "gone".into(),
                    event_types: vec![">".into()],
                    filter: None,
                },
            ],
            schemas: Vec::new(),
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

    #[test]
    fn an_endpoint_receives_when_any_of_its_subscriptions_passes() {
        let big = json!({"field": "$.amount", "gte": 100});
        let eur = json!({"field": "$.currency", "eq": "EUR"});
        let routes = TenantRoutes {
            tenant: "acme".into(),
            endpoints: vec![endpoint("a"), endpoint("b"), endpoint("c")],
            routes: vec![
                route("a-big", "a", Some(big.clone())),
                route("a-eur", "a", Some(eur)),
                route("b-big", "b", Some(big)),
                route("c-all", "c", None),
            ],
            schemas: Vec::new(),
        };
        let compiled = CompiledTenant::compile(Arc::new(routes)).unwrap_or_else(|e| panic!("{e}"));
        let subscribed = compiled.subscribed("order.paid");
        assert!(subscribed.has_filters());
        assert_eq!(subscribed.endpoints().len(), 3);
        let names = |s: &Selection| {
            s.endpoints
                .iter()
                .map(|e| e.name.clone())
                .collect::<Vec<_>>()
        };

        let small_eur = subscribed.select(&Body(Some(json!({"amount": 5, "currency": "EUR"}))));
        assert_eq!(names(&small_eur), ["a", "c"]);
        assert_eq!(small_eur.filtered_out, ["a-big", "b-big"]);

        let big_usd = subscribed.select(&Body(Some(json!({"amount": 500, "currency": "USD"}))));
        assert_eq!(names(&big_usd), ["a", "b", "c"]);
        assert_eq!(big_usd.filtered_out, ["a-eur"]);

        let not_json = subscribed.select(&Body(None));
        assert_eq!(names(&not_json), ["c"]);
        assert_eq!(not_json.filtered_out.len(), 3);

        assert!(!compiled.subscribed("invoice.paid").has_filters());
    }

    #[test]
    fn schemas_and_filters_compile_once_and_bad_ones_are_refused() {
        let with_schema = |schema: Value, filter: Option<Value>| TenantRoutes {
            tenant: "acme".into(),
            endpoints: vec![endpoint("a")],
            routes: vec![route("s", "a", filter)],
            schemas: vec![PayloadSchema {
                event_type: "order.paid".into(),
                schema,
                on_invalid: OnInvalid::Deliver,
            }],
        };
        let compiled = CompiledTenant::compile(Arc::new(with_schema(
            json!({"type": "object", "required": ["order"]}),
            None,
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        let schema = compiled.schema("order.paid").expect("schema");
        assert_eq!(schema.on_invalid, OnInvalid::Deliver);
        assert!(schema.check(Some(&json!({"order": 1}))).is_ok());
        assert!(compiled.schema("order.created").is_none());

        let bad_schema = CompiledTenant::compile(Arc::new(with_schema(json!({"type": 1}), None)));
        assert!(matches!(bad_schema, Err(RoutesError::Schema { .. })));
        let bad_filter = CompiledTenant::compile(Arc::new(with_schema(
            json!({}),
            Some(json!({"all": [{"field": "x", "eq": 1}]})),
        )));
        let error = bad_filter.map(|_| ()).expect_err("bad filter");
        assert!(error.to_string().contains("filter.all[0].field"), "{error}");
    }

    #[test]
    fn routes_without_new_fields_serialise_as_before() {
        let routes = TenantRoutes {
            tenant: "acme".into(),
            endpoints: vec![endpoint("a")],
            routes: vec![route("s", "a", None)],
            schemas: Vec::new(),
        };
        let text = serde_json::to_string(&routes).unwrap_or_default();
        for absent in [
            "filter",
            "schemas",
            "format",
            "ordering",
            "partitionKeyHeader",
        ] {
            assert!(!text.contains(absent), "{text}");
        }
    }
}
