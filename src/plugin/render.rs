//! Human output: kubectl-style tables (aligned columns, upper-case headers, ages).
//!
//! Every cell is cleaned of control characters first: response bodies and error messages come
//! from webhook receivers, and a terminal must never interpret them.

use std::io::Write;

use jiff::Timestamp;
use tabwriter::TabWriter;

use super::views::{Attempt, DeadLetter, Endpoint, Event};

/// Longest free-text cell (messages, response bodies), in characters.
const TEXT_WIDTH: usize = 80;

struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    fn render(&self, indent: &str) -> String {
        let mut writer = TabWriter::new(Vec::new()).padding(3);
        for row in &self.rows {
            // Writing into a Vec cannot fail.
            let _ = writeln!(writer, "{indent}{}", row.join("\t"));
        }
        writer
            .into_inner()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

/// One line, no control characters (tabs, newlines, escape sequences), and never empty.
fn clean(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        "-".into()
    } else {
        trimmed.to_owned()
    }
}

fn shorten(text: &str) -> String {
    let text = clean(text);
    if text.chars().count() <= TEXT_WIDTH {
        text
    } else {
        let mut short: String = text.chars().take(TEXT_WIDTH - 1).collect();
        short.push('…');
        short
    }
}

/// kubectl-like: `42s`, `17m`, `5h`, `3d`; `in 4s` for times ahead.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let seconds = now.as_second() - then.as_second();
    let (ahead, s) = (seconds < 0, seconds.unsigned_abs());
    let text = match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    };
    if ahead { format!("in {text}") } else { text }
}

fn code(status: Option<u16>) -> String {
    status.map(|c| c.to_string()).unwrap_or_default()
}

pub fn endpoints(list: &[Endpoint], with_namespace: bool, now: Timestamp) -> String {
    let mut headers = vec![
        "NAME",
        "URL",
        "HEALTH",
        "DELIVERED",
        "FAILED",
        "DEAD",
        "LAST FAILURE",
    ];
    if with_namespace {
        headers.insert(0, "NAMESPACE");
    }
    let mut table = Table::new(&headers);
    for e in list {
        let last_failure = match (&e.reason, &e.last_failure) {
            (Some(reason), _) => format!("{reason}: {}", e.message.as_deref().unwrap_or("")),
            (None, Some(f)) => {
                let status = f.status_code.map(|c| format!(" ({c})")).unwrap_or_default();
                let when = f.time.map(|t| format!(" {} ago", age(now, t)));
                format!("{}{status}{}", f.reason, when.unwrap_or_default())
            }
            (None, None) => String::new(),
        };
        let mut row = vec![
            e.name.clone(),
            e.url.clone(),
            e.health.clone(),
            e.delivered.to_string(),
            e.failed_attempts.to_string(),
            e.dead_lettered.to_string(),
            shorten(&last_failure),
        ];
        if with_namespace {
            row.insert(0, e.namespace.clone());
        }
        table.row(row);
    }
    table.render("")
}

fn outcome(attempt: &Attempt, now: Timestamp) -> String {
    match &attempt.outcome {
        Some(o) if o.state == "retrying" => match o.next_attempt_time {
            Some(next) if next > now => format!("retrying, next {}", age(now, next)),
            Some(next) => format!("retrying, next was due {} ago", age(now, next)),
            None => "retrying".into(),
        },
        Some(o) => o.state.clone(),
        None => String::new(),
    }
}

/// What went wrong, in one cell: the error, else the response body.
fn attempt_detail(attempt: &Attempt) -> String {
    let detail = attempt
        .error
        .as_deref()
        .or(attempt.response_body.as_deref())
        .unwrap_or("");
    shorten(detail)
}

fn duration(ms: Option<f64>) -> String {
    match ms {
        Some(ms) if ms < 1000.0 => format!("{ms:.0}ms"),
        Some(ms) => format!("{:.2}s", ms / 1000.0),
        None => String::new(),
    }
}

pub fn attempts(list: &[Attempt], now: Timestamp) -> String {
    let mut table = Table::new(&[
        "AGE", "EVENT", "TYPE", "ATTEMPT", "RESULT", "REASON", "CODE", "DURATION", "OUTCOME",
        "DETAIL",
    ]);
    for a in list {
        table.row(vec![
            age(now, a.time),
            a.event_id.clone(),
            a.event_type.clone(),
            a.attempt.to_string(),
            a.result.clone(),
            a.reason.clone().unwrap_or_default(),
            code(a.status_code),
            duration(a.duration_ms),
            outcome(a, now),
            attempt_detail(a),
        ]);
    }
    table.render("")
}

pub fn dead_letters(list: &[DeadLetter], now: Timestamp) -> String {
    let mut table = Table::new(&[
        "AGE", "EVENT", "TYPE", "REASON", "CODE", "ATTEMPTS", "MESSAGE",
    ]);
    for d in list {
        table.row(vec![
            age(now, d.dead_lettered_time),
            d.event_id.clone(),
            d.event_type.clone(),
            d.reason.clone(),
            code(d.status_code),
            d.attempts.to_string(),
            shorten(&d.message),
        ]);
    }
    table.render("")
}

pub fn event(event: &Event, now: Timestamp) -> String {
    let published = event
        .published_time
        .map(|t| format!("{t} ({} ago)", age(now, t)))
        .unwrap_or_default();
    let payload = match &event.payload {
        serde_json::Value::String(text) => text.clone(),
        value => serde_json::to_string_pretty(value).unwrap_or_default(),
    };
    let mut out = Table::new(&["ID:", &clean(&event.id)]);
    out.row(vec!["Namespace:".into(), event.namespace.clone()]);
    out.row(vec!["Type:".into(), event.event_type.clone()]);
    out.row(vec!["Published:".into(), published]);
    out.row(vec![
        "Content-Type:".into(),
        event.content_type.clone().unwrap_or_default(),
    ]);
    let mut text = out.render("");
    text.push_str("Payload:\n");
    for line in payload.lines() {
        // Keep the payload's own layout, but no escape sequences.
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        text.push_str(&format!("  {line}\n"));
    }
    text.push_str("Deliveries:\n");
    let mut deliveries = Table::new(&[
        "ENDPOINT",
        "STATE",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "LAST RESULT",
        "DETAIL",
    ]);
    for d in &event.deliveries {
        let last = d.last_attempt.as_ref();
        deliveries.row(vec![
            d.endpoint.clone(),
            d.state.clone(),
            d.attempts.to_string(),
            d.next_attempt_time.map(|t| age(now, t)).unwrap_or_default(),
            last.map(|a| {
                let status = a.status_code.map(|c| format!(" ({c})")).unwrap_or_default();
                format!("{}{status}", a.result)
            })
            .unwrap_or_default(),
            last.map(attempt_detail).unwrap_or_default(),
        ]);
    }
    if event.deliveries.is_empty() {
        text.push_str("  <none>\n");
    } else {
        text.push_str(&deliveries.render("  "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_lose_control_characters_and_long_text_is_shortened() {
        assert_eq!(clean("a\tb\nc\u{1b}[31mred"), "a b c [31mred");
        assert_eq!(clean("  "), "-");
        let long = "x".repeat(200);
        assert_eq!(shorten(&long).chars().count(), TEXT_WIDTH);
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let before = |s: i64| now - jiff::SignedDuration::from_secs(s);
        assert_eq!(age(now, before(42)), "42s");
        assert_eq!(age(now, before(17 * 60)), "17m");
        assert_eq!(age(now, before(5 * 3600)), "5h");
        assert_eq!(age(now, before(3 * 86_400)), "3d");
        assert_eq!(age(now, before(-4)), "in 4s");
    }
}
