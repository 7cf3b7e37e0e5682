//! What payload filters cost the router: events/s through its routing decision
//! (`Inbound::read`, then `dataplane::plan::EventMessage::plan_subscribed`) for one tenant of 1,000 endpoints with one
//! subscription each, once without filters and once with a filter on every subscription, side
//! by side in one run. Two shapes: each event type selected by 10 of the 1,000 subscriptions
//! (100 event types), and every subscription selecting every event (the worst case for
//! filters: 1,000 evaluated per event).
//!
//! The filter is `all` of an `eq`, an `in` and a `gte` on the JSON body; the events vary so
//! that about one in ten passes. Writes the `filters-bench` section of BENCHMARKS.md.

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::HeaderMap;
use bytes::Bytes;
use jiff::Timestamp;
use serde_json::json;
use webhook_operator::{
    dataplane::{
        inbound::Inbound,
        plan::{EventLimits, EventMessage},
    },
    model::CompiledTenant,
};

use crate::{compile, numbers, sections, tenant};

const SUBSCRIPTIONS: usize = 1_000;
const TENANT: &str = "shop";
const RUNS: usize = 7;
/// Each measurement routes events for this long, one thread.
const RUN_FOR: Duration = Duration::from_millis(300);
const TIERS: [&str; 3] = ["gold", "silver", "bronze"];
const CURRENCIES: [&str; 5] = ["EUR", "USD", "GBP", "JPY", "CHF"];
/// Distinct events cycled through.
const EVENTS: usize = 60;

/// How many of the 1,000 subscriptions an event's type selects.
#[derive(Clone, Copy)]
enum Shape {
    /// 100 event types, each selected by 10 subscriptions.
    Ten,
    /// Every subscription selects every event.
    All,
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Shape::Ten => "10 of 1,000 (100 event types)",
            Shape::All => "all 1,000",
        }
    }

    fn pattern(self, subscription: usize) -> String {
        match self {
            Shape::Ten => format!("orders.t{}.*", subscription % 100),
            Shape::All => "orders.>".into(),
        }
    }
}

/// Subscription `i`'s filter: about a third of the tiers, three of five currencies, and an
/// amount threshold from 0 to 900.
fn filter(i: usize) -> serde_json::Value {
    json!({"all": [
        {"field": "$.data.customer.tier", "eq": TIERS[i % TIERS.len()]},
        {"field": "$.data.currency", "in": ["EUR", "USD", "GBP"]},
        {"field": "$.data.amount", "gte": (i % 10) * 100},
    ]})
}

/// One published event: subject type, headers and payload, as the router reads them.
struct Event {
    event_type: String,
    headers: HeaderMap,
    payload: Bytes,
}

fn events() -> Vec<Event> {
    (0..EVENTS)
        .map(|k| {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("evt-{k}").as_str());
            headers.insert("Content-Type", "application/json");
            let payload = json!({
                "id": format!("evt-{k}"),
                "type": "order.paid",
                "data": {
                    "order": format!("ord_{:06}", k * 7919),
                    "amount": (k * 37) % 1000,
                    "currency": CURRENCIES[k % CURRENCIES.len()],
                    "customer": {"id": format!("cus_{k}"), "tier": TIERS[k % TIERS.len()], "region": "eu-west"},
                    "items": [{"sku": "A-1", "qty": 1}, {"sku": "B-2", "qty": 3}],
                },
            });
            Event {
                event_type: format!("orders.t{}.paid", (k * 13) % 100),
                headers,
                payload: Bytes::from(payload.to_string()),
            }
        })
        .collect()
}

fn compiled(shape: Shape, filtered: bool) -> Arc<CompiledTenant> {
    compile(&tenant(TENANT, SUBSCRIPTIONS, |e| {
        vec![(vec![shape.pattern(e)], filtered.then(|| filter(e)))]
    }))
}

/// Events routed per second over [`RUN_FOR`], and the endpoints each went to on average.
fn measure(routes: &CompiledTenant, events: &[Event]) -> (f64, f64) {
    let limits = EventLimits::default();
    let published = Timestamp::now();
    let (mut routed, mut endpoints) = (0usize, 0usize);
    let start = Instant::now();
    while start.elapsed() < RUN_FOR {
        for event in events {
            let inbound = Inbound::read(
                TENANT,
                &event.event_type,
                Some(&event.headers),
                &event.payload,
                limits.max_payload_bytes,
                || "evt".into(),
            );
            let message = EventMessage {
                tenant: TENANT,
                sequence: 0,
                delivered: 1,
                published,
                target: None,
                event: inbound,
            };
            endpoints += black_box(message.plan_subscribed(routes, &limits)).endpoint_count();
        }
        routed += events.len();
    }
    (
        routed as f64 / start.elapsed().as_secs_f64(),
        endpoints as f64 / routed as f64,
    )
}

/// Bodies per second parsed into a JSON value (`parse`, what filters read), or only checked to
/// be JSON (what routing without filters does).
fn measure_json(events: &[Event], parse: bool) -> f64 {
    let (mut done, start) = (0usize, Instant::now());
    while start.elapsed() < RUN_FOR {
        for event in events {
            let ok = match parse {
                true => serde_json::from_slice::<serde_json::Value>(&event.payload).is_ok(),
                false => serde_json::from_slice::<serde::de::IgnoredAny>(&event.payload).is_ok(),
            };
            black_box(ok);
        }
        done += events.len();
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// A row: without and with filters, each (events/s, endpoints per event), medians.
struct Row {
    shape: Shape,
    plain: (f64, f64),
    filtered: (f64, f64),
}

/// Measures both shapes, runs interleaved, and writes the section.
pub fn run(cores: usize) {
    let events = events();
    let shapes = [Shape::Ten, Shape::All];
    let tenants: Vec<[Arc<CompiledTenant>; 2]> = shapes
        .iter()
        .map(|&s| [compiled(s, false), compiled(s, true)])
        .collect();
    // rates[shape][filtered] over the runs; endpoints per event do not vary.
    let mut rates = vec![[Vec::new(), Vec::new()]; shapes.len()];
    let mut fanout = vec![[0.0; 2]; shapes.len()];
    let (mut parsed, mut checked) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        parsed.push(measure_json(&events, true));
        checked.push(measure_json(&events, false));
        for (s, pair) in tenants.iter().enumerate() {
            for (f, routes) in pair.iter().enumerate() {
                let (rate, per_event) = measure(routes, &events);
                rates[s][f].push(rate);
                fanout[s][f] = per_event;
            }
        }
    }
    let rows: Vec<Row> = shapes
        .iter()
        .enumerate()
        .map(|(s, &shape)| Row {
            shape,
            plain: (numbers::median_f64(rates[s][0].clone()), fanout[s][0]),
            filtered: (numbers::median_f64(rates[s][1].clone()), fanout[s][1]),
        })
        .collect();
    let mut table = table(&rows);
    // What the filters add per event, and how much of it is the one JSON parse.
    let micros = |rate: f64| 1e6 / rate;
    let ten = &rows[0];
    let added = micros(ten.filtered.0) - micros(ten.plain.0);
    let parse = micros(numbers::median_f64(parsed)) - micros(numbers::median_f64(checked));
    table.push_str(&format!(
        "\nWith 10 subscriptions selected, filters add {added:.2} µs per event: parsing the body into a JSON value \
         instead of only checking it accounts for {parse:.2} µs, evaluating the 10 filters for the remaining \
         {:.2} µs (about {:.0} ns per filter).\n",
        added - parse,
        (added - parse) * 1e3 / ten.plain.1
    ));
    print!("\n{table}");
    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z");
    let body = format!(
        "## Payload filters: routing with 1,000 filtered subscriptions\n\n\
         Command: `make bench-routes` (runs `cargo bench --bench routes`; also part of `make bench`), {date}. \
         One tenant of 1,000 endpoints with one subscription each, without filters and with this filter on \
         every subscription: `all` of `{{field: $.data.customer.tier, eq: <gold|silver|bronze>}}`, \
         `{{field: $.data.currency, in: [EUR, USD, GBP]}}` and `{{field: $.data.amount, gte: <0..900>}}`. \
         {EVENTS} events (~300-byte JSON orders) cycle; about one in ten passes a given filter. Events/s is \
         the router's whole routing decision, one thread: `Inbound::read` (headers, id, type) and \
         `EventMessage::plan_subscribed` (pattern match, JSON check or parse, every selected subscription's filter, the \
         endpoint list). Without filters the body is only validated; with filters it is parsed once per \
         event, however many filters read it. Medians of {RUNS} runs of {} ms, both variants interleaved \
         in one run on a shared, noisy machine ({cores} cores, other work running). Storing the jobs \
         (one JetStream publish per endpoint) is not part of this: it costs far more per event, see the \
         pipeline runs above.\n\n{table}",
        RUN_FOR.as_millis()
    );
    if let Err(error) = sections::write("filters-bench", &body) {
        eprintln!("could not update BENCHMARKS.md: {error}");
    }
}

fn rate(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M/s", value / 1e6)
    } else {
        format!("{}/s", numbers::thousands(value))
    }
}

fn table(rows: &[Row]) -> String {
    let mut table = String::from(
        "| subscriptions an event's type selects | without filters: events/s (endpoints per event) | with filters: events/s (endpoints per event) | with / without | filters evaluated/s |\n|---|---|---|---|---|\n",
    );
    for row in rows {
        // One subscription per endpoint: every selected subscription's filter is evaluated.
        let evaluated = row.filtered.0 * row.plain.1;
        table.push_str(&format!(
            "| {} | {} ({:.0}) | **{}** ({:.1}) | {:.2} | {} |\n",
            row.shape.describe(),
            rate(row.plain.0),
            row.plain.1,
            rate(row.filtered.0),
            row.filtered.1,
            row.filtered.0 / row.plain.0,
            rate(evaluated)
        ));
    }
    table
}
