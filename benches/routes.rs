//! Large-configuration benchmark: 10,000 endpoints and 20,000 subscriptions over 100 tenants.
//!
//! Builds the custom resources as the controller sees them, then measures
//! - route compilation: `resources::compile::compile_tenant` (objects -> `TenantRoutes`, what the
//!   controller and local mode publish) followed by `CompiledTenant::compile` (the token trie and
//!   filters every router builds from them), per tenant and for all tenants;
//! - memory: resident set growth while compiling everything once (`/proc/self/statm`);
//! - matching: the router's lookup of an event type (`CompiledRoutes::tenant` + `subscribed`
//!   + `endpoints`), single thread, in lookups per second.
//!
//! Every figure is the median of several runs. `make bench-routes` (or `make bench`) runs it;
//! the table is printed and replaces the routes section of BENCHMARKS.md. Targets from the scale issue: all 10,000 endpoints
//! recompiled in under 1 s, at least 1,000,000 lookups/s.
//!
//! Then the cost of payload filters in routing (`routes/filters.rs`), its own section.

#[path = "routes/filters.rs"]
mod filters;
// Shared with other benches; this one uses a part of each.
#[allow(dead_code)]
#[path = "common/numbers.rs"]
mod numbers;
#[allow(dead_code)]
#[path = "common/sections.rs"]
mod sections;

use std::{
    collections::BTreeMap,
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use webhook_operator::{
    model::{
        NamespaceData,
        routes::{CompiledRoutes, CompiledTenant},
        signing_keys::SigningKeys,
    },
    resources::{
        EventSubscription, EventSubscriptionSpec, WebhookEndpoint, WebhookEndpointSpec,
        compile::{Policy, SecretData, compile_tenant},
    },
};

const TENANTS: usize = 100;
const ENDPOINTS_PER_TENANT: usize = 100;
/// Two subscriptions per endpoint.
const SUBSCRIPTIONS_PER_ENDPOINT: usize = 2;
const RUNS: usize = 7;
const LOOKUPS_PER_RUN: usize = 2_000_000;
const COMPILE_TARGET: Duration = Duration::from_secs(1);
const LOOKUP_TARGET: f64 = 1_000_000.0;

/// Event types of the benchmark's world: 20 services with a few entities and verbs each, plus
/// cross-cutting ones. Subscriptions use exact types, `*` and `>`.
const SERVICES: usize = 20;
const ENTITIES: [&str; 4] = ["order", "invoice", "customer", "shipment"];
const VERBS: [&str; 4] = ["created", "updated", "deleted", "paid"];

struct Tenant {
    name: String,
    endpoints: Vec<WebhookEndpoint>,
    subscriptions: Vec<EventSubscription>,
    data: NamespaceData,
}

/// A tenant of `endpoints` endpoints as custom resources; endpoint `e` gets one subscription
/// per `(event types, filter)` that `subscriptions(e)` returns.
fn tenant(
    name: &str,
    endpoints: usize,
    subscriptions: impl Fn(usize) -> Vec<(Vec<String>, Option<Value>)>,
) -> Tenant {
    let mut objects = Vec::with_capacity(endpoints);
    let mut subscription_objects = Vec::new();
    let mut secrets = SecretData::new();
    for e in 0..endpoints {
        let ep = format!("ep-{e:03}");
        let spec: WebhookEndpointSpec = serde_json::from_value(json!({
            "url": format!("https://hooks.{name}.example/{ep}"),
            "timeout": "5s",
            "retry": {"maxAttempts": 10, "initialBackoff": "1s", "maxBackoff": "1m", "maxAge": "24h"},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut endpoint = WebhookEndpoint::new(&ep, spec);
        endpoint.metadata.namespace = Some(name.to_owned());
        objects.push(endpoint);
        secrets.insert(
            format!("{ep}-signing"),
            BTreeMap::from([("secret".to_string(), SigningKeys::generate().into_bytes())]),
        );
        for (s, (event_types, filter)) in subscriptions(e).into_iter().enumerate() {
            let spec: EventSubscriptionSpec = serde_json::from_value(json!({
                "endpointRef": {"name": ep},
                "eventTypes": event_types,
                "filter": filter,
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            let mut subscription = EventSubscription::new(&format!("{ep}-{s}"), spec);
            subscription.metadata.namespace = Some(name.to_owned());
            subscription_objects.push(subscription);
        }
    }
    Tenant {
        name: name.to_owned(),
        endpoints: objects,
        subscriptions: subscription_objects,
        data: NamespaceData {
            secrets,
            config_maps: Default::default(),
        },
    }
}

fn world() -> Vec<Tenant> {
    (0..TENANTS)
        .map(|t| {
            tenant(&format!("tenant-{t:03}"), ENDPOINTS_PER_TENANT, |e| {
                let service = (t + e) % SERVICES;
                let entity = ENTITIES[e % ENTITIES.len()];
                (0..SUBSCRIPTIONS_PER_ENDPOINT)
                    .map(|s| {
                        let event_types = if s == 0 {
                            vec![
                                format!("svc{service}.{entity}.{}", VERBS[e % VERBS.len()]),
                                format!("svc{service}.{entity}.*"),
                            ]
                        } else {
                            vec![
                                format!("svc{}.>", (service + 7) % SERVICES),
                                format!("{entity}.*"),
                            ]
                        };
                        // Every tenth subscription has a payload filter, compiled with the routes.
                        let filter = (e % 10 == 0 && s == 1)
                            .then(|| json!({"field": "$.currency", "in": ["EUR", "USD"]}));
                        (event_types, filter)
                    })
                    .collect()
            })
        })
        .collect()
}

/// Objects -> published routes -> the router's index, as a new routes snapshot does.
fn compile(tenant: &Tenant) -> Arc<CompiledTenant> {
    let report = compile_tenant(
        &tenant.name,
        &tenant.endpoints,
        &tenant.subscriptions,
        &[],
        &tenant.data,
        Policy::default(),
    );
    assert_eq!(
        report.routes.endpoints.len(),
        tenant.endpoints.len(),
        "{:?}",
        report.endpoints
    );
    assert_eq!(report.routes.routes.len(), tenant.subscriptions.len());
    Arc::new(CompiledTenant::compile(Arc::new(report.routes)).unwrap_or_else(|e| panic!("{e}")))
}

fn compile_all(world: &[Tenant]) -> (CompiledRoutes, Vec<Duration>) {
    let mut per_tenant = Vec::with_capacity(world.len());
    let mut routes = CompiledRoutes::default();
    for tenant in world {
        let start = Instant::now();
        let compiled = compile(tenant);
        per_tenant.push(start.elapsed());
        routes.tenants.insert(tenant.name.clone(), compiled);
    }
    (routes, per_tenant)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

/// (tenant, event type) pairs the router would look up: a mix of subscribed types (several
/// matching patterns each) and types nobody subscribed to.
fn lookups() -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut n = 0usize;
    while pairs.len() < 4_096 {
        let tenant = format!("tenant-{:03}", n % TENANTS);
        let event_type = match n % 4 {
            0 | 1 => format!(
                "svc{}.{}.{}",
                (n / 4) % SERVICES,
                ENTITIES[(n / 3) % ENTITIES.len()],
                VERBS[(n / 5) % VERBS.len()]
            ),
            2 => format!(
                "{}.{}",
                ENTITIES[n % ENTITIES.len()],
                VERBS[(n / 7) % VERBS.len()]
            ),
            _ => format!("unsubscribed.type.{n}"),
        };
        pairs.push((tenant, event_type));
        n += 1;
    }
    pairs
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "routes bench: {TENANTS} tenants x {ENDPOINTS_PER_TENANT} endpoints = {} endpoints, {} subscriptions; \
         {RUNS} runs, medians; {machine} cores",
        TENANTS * ENDPOINTS_PER_TENANT,
        TENANTS * ENDPOINTS_PER_TENANT * SUBSCRIPTIONS_PER_ENDPOINT
    );
    let build = Instant::now();
    let world = world();
    let build = build.elapsed();

    // Memory: the first compilation, from objects only to every tenant indexed.
    let before = rss_bytes();
    let (first, _) = compile_all(&world);
    let grown = rss_bytes().saturating_sub(before);
    let subscriptions = first.subscription_count();
    drop(first);

    let mut all = Vec::with_capacity(RUNS);
    let mut tenant_medians = Vec::with_capacity(RUNS);
    let mut tenant_max = Vec::with_capacity(RUNS);
    let mut routes = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let (compiled, per_tenant) = compile_all(&world);
        all.push(start.elapsed());
        tenant_max.push(per_tenant.iter().copied().max().unwrap_or_default());
        tenant_medians.push(median(per_tenant));
        routes = Some(compiled);
    }
    let routes = routes.unwrap_or_default();

    let pairs = lookups();
    let mut rates = Vec::with_capacity(RUNS);
    let mut matched = 0usize;
    for _ in 0..RUNS {
        matched = 0;
        let start = Instant::now();
        for i in 0..LOOKUPS_PER_RUN {
            let (tenant, event_type) = &pairs[i % pairs.len()];
            if let Some(compiled) = routes.tenant(black_box(tenant)) {
                let subscribed = compiled.subscribed(black_box(event_type));
                matched += black_box(subscribed.endpoints()).len();
            }
        }
        rates.push(LOOKUPS_PER_RUN as f64 / start.elapsed().as_secs_f64());
    }
    let per_lookup = matched as f64 / LOOKUPS_PER_RUN as f64;

    let all = median(all);
    let rate = median(rates);
    let yes = |ok: bool| if ok { "yes" } else { "no" };
    let mut table = String::from("| measure | result | target | met |\n|---|---|---|---|\n");
    let mut row = |line: String| {
        table.push_str(&line);
        table.push('\n');
    };
    row(format!(
        "| Compile all {} endpoints, {subscriptions} subscriptions (objects -> routes -> index) | {} | < 1 s | {} |",
        TENANTS * ENDPOINTS_PER_TENANT,
        ms(all),
        yes(all < COMPILE_TARGET)
    ));
    row(format!(
        "| Compile one tenant (100 endpoints, 200 subscriptions): median / slowest of a run | {} / {} | | |",
        ms(median(tenant_medians)),
        ms(median(tenant_max))
    ));
    row(format!(
        "| Memory: RSS growth, first compilation of all tenants | {:.1} MiB | | |",
        grown as f64 / (1024.0 * 1024.0)
    ));
    row(format!(
        "| Lookups (tenant + event type -> endpoints), one thread | {:.2} M/s ({per_lookup:.1} endpoints each on average) | >= 1 M/s | {} |",
        rate / 1e6,
        yes(rate >= LOOKUP_TARGET)
    ));
    row(format!(
        "| Building the 30,000 objects (not compiled; reference) | {} | | |",
        ms(build)
    ));
    print!("\n{table}");
    write_section(&table, machine);
    filters::run(machine);
}

/// Replaces the routes section of BENCHMARKS.md, leaving the rest as it is.
fn write_section(table: &str, cores: usize) {
    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z");
    let body = format!(
        "## Routes at 10,000 endpoints and 20,000 subscriptions\n\n\
         Command: `make bench-routes` (runs `cargo bench --bench routes`; also part of `make bench`), {date}. \
         {TENANTS} tenants of {ENDPOINTS_PER_TENANT} endpoints, two subscriptions each (exact types, `*` and `>`; \
         every tenth with a payload filter), built as custom resources. Compiling is what a change of routes \
         costs: `compile_tenant` (objects -> published routes) and `CompiledTenant::compile` (the router's \
         index). Lookups are the router's `CompiledRoutes::tenant` + `subscribed` + `endpoints`, one thread. \
         Medians of {RUNS} runs on a shared, noisy machine ({cores} cores, other work running).\n\n{table}"
    );
    if let Err(error) = sections::write("routes-bench", &body) {
        eprintln!("could not update BENCHMARKS.md: {error}");
    }
}
