//! Payload filters: conditions on an event's JSON body and headers that a subscription adds to
//! its event-type patterns.
//!
//! A filter node is either a combinator (`all`, `any`, `not`) or a condition on one `field` (a
//! JSONPath into the body) or one `header`, with exactly one operator:
//!
//! ```yaml
//! all:
//!   - { field: "$.data.amount", gte: 100 }
//!   - any:
//!       - { field: "$.currency", in: ["EUR", "USD"] }
//!       - not: { field: "$.test", exists: true }
//!   - { header: x-region, prefix: "eu-" }
//! ```
//!
//! Evaluation never fails: a missing field, a type mismatch (`gt` on a string, `prefix` on a
//! number) or a body that is not JSON makes the condition false. `not` inverts that, so
//! `not: {field: $.x, gt: 5}` holds when `x` is missing.

use std::fmt;

use serde_json::{Number, Value};

/// Deepest nesting of combinators a filter may use.
pub const MAX_DEPTH: usize = 8;
/// Most nodes (combinators and conditions) in one filter.
pub const MAX_NODES: usize = 128;
/// Most values in one `in` list.
pub const MAX_IN_VALUES: usize = 256;

const OPERATORS: [&str; 9] = [
    "eq", "in", "gt", "gte", "lt", "lte", "exists", "prefix", "suffix",
];

/// Why a filter is invalid: `path` locates the node (`.all[0].field`, empty for the root).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FilterError {
    pub path: String,
    pub message: String,
}

/// What a filter reads from an event. The body is parsed on first use, at most once.
pub trait EventView {
    /// The body as JSON; `None` when it is not JSON.
    fn body(&self) -> Option<&Value>;
    /// The first value of a header, its name compared without regard to case.
    fn header(&self, name: &str) -> Option<&str>;
}

/// A validated filter, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Field(JsonPath, Operator),
    /// Header name in lower case.
    Header(String, Operator),
}

/// The comparison of one condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    Eq(Value),
    In(Vec<Value>),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Exists(bool),
    Prefix(String),
    Suffix(String),
}

impl Filter {
    /// Parses and validates a filter as written in a subscription.
    pub fn parse(value: &Value) -> Result<Self, FilterError> {
        let mut nodes = 0;
        parse_node(value, String::new(), 0, &mut nodes)
    }

    pub fn matches<E: EventView + ?Sized>(&self, event: &E) -> bool {
        match self {
            Self::All(filters) => filters.iter().all(|f| f.matches(event)),
            Self::Any(filters) => filters.iter().any(|f| f.matches(event)),
            Self::Not(filter) => !filter.matches(event),
            Self::Field(path, operator) => match event.body() {
                None => false,
                Some(body) => operator.test_json(path.resolve(body)),
            },
            Self::Header(name, operator) => operator.test_header(event.header(name)),
        }
    }
}

fn parse_node(
    value: &Value,
    path: String,
    depth: usize,
    nodes: &mut usize,
) -> Result<Filter, FilterError> {
    let fail = |message: String| FilterError {
        path: path.clone(),
        message,
    };
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(fail(format!("a filter has at most {MAX_NODES} nodes")));
    }
    if depth > MAX_DEPTH {
        return Err(fail(format!(
            "filters nest at most {MAX_DEPTH} levels deep"
        )));
    }
    let Some(object) = value.as_object() else {
        return Err(fail(format!(
            "expected an object with one of all, any, not, field or header; got {}",
            kind(value)
        )));
    };
    let subjects: Vec<&str> = ["all", "any", "not", "field", "header"]
        .into_iter()
        .filter(|k| object.contains_key(*k))
        .collect();
    let operators: Vec<&str> = OPERATORS
        .into_iter()
        .filter(|k| object.contains_key(*k))
        .collect();
    if let Some(unknown) = object
        .keys()
        .find(|k| !subjects.contains(&k.as_str()) && !OPERATORS.contains(&k.as_str()))
    {
        return Err(fail(format!(
            "unknown key {unknown:?} (expected all, any, not, field or header, and one of {})",
            OPERATORS.join(", ")
        )));
    }
    let subject = match subjects.as_slice() {
        [one] => *one,
        [] => {
            return Err(fail(
                "needs one of all, any, not, field or header".to_owned(),
            ));
        }
        many => {
            return Err(fail(format!(
                "has {}: a node has exactly one of all, any, not, field or header",
                many.join(" and ")
            )));
        }
    };
    let child_path = |suffix: String| format!("{path}{suffix}");
    match subject {
        "all" | "any" | "not" => {
            if let Some(op) = operators.first() {
                return Err(fail(format!(
                    "{subject} takes no operator; {op} belongs next to a field or header"
                )));
            }
            let inner = &object[subject];
            if subject == "not" {
                let child = parse_node(inner, child_path(".not".into()), depth + 1, nodes)?;
                return Ok(Filter::Not(Box::new(child)));
            }
            let Some(list) = inner.as_array() else {
                return Err(fail(format!(
                    "{subject} must be a list of filters, got {}",
                    kind(inner)
                )));
            };
            if list.is_empty() {
                return Err(fail(format!("{subject} needs at least one filter")));
            }
            let children = list
                .iter()
                .enumerate()
                .map(|(i, child)| {
                    parse_node(
                        child,
                        child_path(format!(".{subject}[{i}]")),
                        depth + 1,
                        nodes,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if subject == "all" {
                Filter::All(children)
            } else {
                Filter::Any(children)
            })
        }
        _ => {
            let operator = match operators.as_slice() {
                [one] => *one,
                [] => {
                    return Err(fail(format!(
                        "{subject} needs one operator: {}",
                        OPERATORS.join(", ")
                    )));
                }
                many => {
                    return Err(fail(format!(
                        "has {}: a condition has exactly one operator",
                        many.join(" and ")
                    )));
                }
            };
            let target = object[subject].as_str().ok_or_else(|| FilterError {
                path: child_path(format!(".{subject}")),
                message: format!("must be a string, got {}", kind(&object[subject])),
            })?;
            let header = subject == "header";
            let op_path = child_path(format!(".{operator}"));
            let parsed =
                parse_operator(operator, &object[operator], header).map_err(|message| {
                    FilterError {
                        path: op_path,
                        message,
                    }
                })?;
            if header {
                if !is_header_name(target) {
                    return Err(FilterError {
                        path: child_path(".header".into()),
                        message: format!("{target:?} is not a valid header name"),
                    });
                }
                Ok(Filter::Header(target.to_ascii_lowercase(), parsed))
            } else {
                let json_path = JsonPath::parse(target).map_err(|message| FilterError {
                    path: child_path(".field".into()),
                    message,
                })?;
                Ok(Filter::Field(json_path, parsed))
            }
        }
    }
}

/// An HTTP/NATS header name: a non-empty token.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_operator(name: &str, value: &Value, header: bool) -> Result<Operator, String> {
    let number = || {
        value
            .as_f64()
            .filter(|n| n.is_finite())
            .ok_or_else(|| format!("{name} compares numbers; got {}", kind(value)))
    };
    let string = || {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{name} takes a string; got {}", kind(value)))
    };
    // Header values are strings: equality with a number or an object could never hold.
    let comparable = |v: &Value| -> Result<(), String> {
        if header && !v.is_string() {
            return Err(format!(
                "header values are strings; {name} needs string operands, got {}",
                kind(v)
            ));
        }
        Ok(())
    };
    Ok(match name {
        "eq" => {
            comparable(value)?;
            Operator::Eq(value.clone())
        }
        "in" => {
            let list = value
                .as_array()
                .ok_or_else(|| format!("in takes a list; got {}", kind(value)))?;
            if list.is_empty() || list.len() > MAX_IN_VALUES {
                return Err(format!("in takes 1 to {MAX_IN_VALUES} values"));
            }
            list.iter().try_for_each(comparable)?;
            Operator::In(list.clone())
        }
        "gt" => Operator::Gt(number()?),
        "gte" => Operator::Gte(number()?),
        "lt" => Operator::Lt(number()?),
        "lte" => Operator::Lte(number()?),
        "exists" => Operator::Exists(
            value
                .as_bool()
                .ok_or_else(|| format!("exists takes true or false; got {}", kind(value)))?,
        ),
        "prefix" => Operator::Prefix(string()?),
        _ => Operator::Suffix(string()?),
    })
}

impl Operator {
    fn test_json(&self, found: Option<&Value>) -> bool {
        let Some(found) = found else {
            return matches!(self, Self::Exists(false));
        };
        match self {
            Self::Exists(expected) => *expected,
            Self::Eq(expected) => json_eq(found, expected),
            Self::In(values) => values.iter().any(|v| json_eq(found, v)),
            Self::Prefix(prefix) => found.as_str().is_some_and(|s| s.starts_with(prefix)),
            Self::Suffix(suffix) => found.as_str().is_some_and(|s| s.ends_with(suffix)),
            Self::Gt(_) | Self::Gte(_) | Self::Lt(_) | Self::Lte(_) => {
                found.as_f64().is_some_and(|n| self.compare(n))
            }
        }
    }

    fn test_header(&self, found: Option<&str>) -> bool {
        let Some(found) = found else {
            return matches!(self, Self::Exists(false));
        };
        match self {
            Self::Exists(expected) => *expected,
            Self::Eq(expected) => expected.as_str() == Some(found),
            Self::In(values) => values.iter().any(|v| v.as_str() == Some(found)),
            Self::Prefix(prefix) => found.starts_with(prefix.as_str()),
            Self::Suffix(suffix) => found.ends_with(suffix.as_str()),
            Self::Gt(_) | Self::Gte(_) | Self::Lt(_) | Self::Lte(_) => found
                .trim()
                .parse::<f64>()
                .is_ok_and(|n| n.is_finite() && self.compare(n)),
        }
    }

    fn compare(&self, n: f64) -> bool {
        match *self {
            Self::Gt(bound) => n > bound,
            Self::Gte(bound) => n >= bound,
            Self::Lt(bound) => n < bound,
            Self::Lte(bound) => n <= bound,
            _ => false,
        }
    }
}

/// JSON equality, except that numbers compare by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_eq(x, y),
        _ => a == b,
    }
}

fn numbers_eq(x: &Number, y: &Number) -> bool {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return x == y;
    }
    x.as_f64() == y.as_f64()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A JSONPath singular query: `$`, then `.name`, `['name']` or `[index]` steps (a negative
/// index counts from the end). It selects at most one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(i64),
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        let fail = |why: &str| Err(format!("JSONPath {text:?}: {why}"));
        let Some(mut rest) = text.strip_prefix('$') else {
            return fail("must start with $ (e.g. $.data.amount)");
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                    .unwrap_or(after.len());
                if end == 0 {
                    return fail("a '.' must be followed by a name; use ['...'] for other keys");
                }
                steps.push(Step::Key(after[..end].to_owned()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let (step, remainder) = match after.chars().next() {
                    Some(quote @ ('\'' | '"')) => match quoted_key(&after[1..], quote) {
                        Some(parsed) => parsed,
                        None => return fail("unterminated quoted name"),
                    },
                    _ => {
                        let end = after.find(']').unwrap_or(after.len());
                        let Ok(index) = after[..end].parse::<i64>() else {
                            return fail("brackets hold an integer index or a quoted name");
                        };
                        (Step::Index(index), &after[end..])
                    }
                };
                let Some(remainder) = remainder.strip_prefix(']') else {
                    return fail("missing ']'");
                };
                steps.push(step);
                rest = remainder;
            } else {
                return fail("expected '.name', '[index]' or ['name'] after $");
            }
        }
        Ok(Self { steps })
    }

    /// The value at this path, if there is one.
    pub fn resolve<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        self.steps.iter().try_fold(root, |value, step| match step {
            Step::Key(key) => value.as_object()?.get(key),
            Step::Index(index) => {
                let list = value.as_array()?;
                let i = if *index < 0 {
                    list.len().checked_sub(index.unsigned_abs() as usize)?
                } else {
                    *index as usize
                };
                list.get(i)
            }
        })
    }
}

/// A quoted name up to its closing quote; `\` escapes the next character.
fn quoted_key(text: &str, quote: char) -> Option<(Step, &str)> {
    let mut key = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => key.push(chars.next()?.1),
            c if c == quote => return Some((Step::Key(key), &text[i + 1..])),
            c => key.push(c),
        }
    }
    None
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for step in &self.steps {
            match step {
                Step::Key(key) => write!(f, "[{key:?}]")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Event {
        body: Option<Value>,
        headers: Vec<(&'static str, &'static str)>,
    }

    impl EventView for Event {
        fn body(&self) -> Option<&Value> {
            self.body.as_ref()
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        }
    }

    fn order() -> Event {
        Event {
            body: Some(json!({
                "amount": 150,
                "price": 9.5,
                "currency": "EUR",
                "country": "de-DE",
                "paid": true,
                "note": null,
                "count": "7",
                "items": [{"sku": "a-1"}, {"sku": "b-2"}],
                "meta": {"tags": ["x", "y"], "weird.key": "w", "it's": 1},
                "data": {"amount": 100}
            })),
            headers: vec![("X-Region", "eu-west-1"), ("X-Attempt", "3")],
        }
    }

    fn parse(filter: Value) -> Filter {
        Filter::parse(&filter).unwrap_or_else(|e| panic!("{filter}: {e}"))
    }

    #[test]
    fn every_operator_on_fields() {
        let event = order();
        let cases: &[(Value, bool)] = &[
            (json!({"field": "$.currency", "eq": "EUR"}), true),
            (json!({"field": "$.currency", "eq": "USD"}), false),
            (json!({"field": "$.amount", "eq": 150}), true),
            (json!({"field": "$.amount", "eq": 150.0}), true),
            (json!({"field": "$.paid", "eq": true}), true),
            (json!({"field": "$.note", "eq": null}), true),
            (json!({"field": "$.meta.tags", "eq": ["x", "y"]}), true),
            (json!({"field": "$.data", "eq": {"amount": 100}}), true),
            (json!({"field": "$.currency", "in": ["USD", "EUR"]}), true),
            (json!({"field": "$.currency", "in": ["USD", "GBP"]}), false),
            (json!({"field": "$.amount", "in": [1, 150]}), true),
            (json!({"field": "$.amount", "gt": 100}), true),
            (json!({"field": "$.amount", "gt": 150}), false),
            (json!({"field": "$.amount", "gte": 150}), true),
            (json!({"field": "$.amount", "lt": 150}), false),
            (json!({"field": "$.amount", "lte": 150}), true),
            (json!({"field": "$.price", "lt": 10}), true),
            (json!({"field": "$.price", "gte": 9.5}), true),
            (json!({"field": "$.note", "exists": true}), true),
            (json!({"field": "$.absent", "exists": true}), false),
            (json!({"field": "$.absent", "exists": false}), true),
            (json!({"field": "$.amount", "exists": false}), false),
            (json!({"field": "$.country", "prefix": "de-"}), true),
            (json!({"field": "$.country", "prefix": "fr-"}), false),
            (json!({"field": "$.country", "suffix": "-DE"}), true),
            (json!({"field": "$.country", "suffix": "-de"}), false),
            (json!({"field": "$.items[1].sku", "eq": "b-2"}), true),
            (json!({"field": "$.items[-1].sku", "eq": "b-2"}), true),
            (json!({"field": "$.items[5].sku", "exists": true}), false),
            (json!({"field": "$.meta['weird.key']", "eq": "w"}), true),
            (json!({"field": "$.meta[\"it's\"]", "eq": 1}), true),
            (json!({"field": "$['data']['amount']", "gte": 100}), true),
            (json!({"field": "$", "exists": true}), true),
        ];
        for (filter, expected) in cases {
            assert_eq!(parse(filter.clone()).matches(&event), *expected, "{filter}");
        }
    }

    #[test]
    fn missing_fields_and_type_mismatches_are_false() {
        let event = order();
        for filter in [
            json!({"field": "$.absent", "eq": 1}),
            json!({"field": "$.absent", "gt": 1}),
            json!({"field": "$.absent", "prefix": "a"}),
            json!({"field": "$.absent.deeper", "in": ["a"]}),
            // no coercion between strings and numbers
            json!({"field": "$.count", "eq": 7}),
            json!({"field": "$.count", "gt": 1}),
            json!({"field": "$.amount", "eq": "150"}),
            json!({"field": "$.amount", "prefix": "1"}),
            json!({"field": "$.currency", "lt": 5}),
            json!({"field": "$.paid", "eq": 1}),
            json!({"field": "$.meta", "gt": 0}),
            // indexing into an object, naming into a list
            json!({"field": "$.meta[0]", "exists": true}),
            json!({"field": "$.items.sku", "exists": true}),
        ] {
            assert!(!parse(filter.clone()).matches(&event), "{filter}");
        }
        // `not` inverts the outcome, missing or not.
        assert!(parse(json!({"not": {"field": "$.absent", "gt": 5}})).matches(&event));
    }

    #[test]
    fn headers_are_case_insensitive_strings() {
        let event = order();
        let cases: &[(Value, bool)] = &[
            (json!({"header": "x-region", "eq": "eu-west-1"}), true),
            (json!({"header": "X-REGION", "prefix": "eu-"}), true),
            (json!({"header": "x-region", "suffix": "-1"}), true),
            (
                json!({"header": "x-region", "in": ["us-east-1", "eu-west-1"]}),
                true,
            ),
            (json!({"header": "x-region", "prefix": "us-"}), false),
            (json!({"header": "x-attempt", "gte": 3}), true),
            (json!({"header": "x-attempt", "lt": 3}), false),
            (json!({"header": "x-region", "gt": 1}), false),
            (json!({"header": "x-missing", "exists": false}), true),
            (json!({"header": "x-missing", "exists": true}), false),
            (json!({"header": "x-missing", "eq": "a"}), false),
            (json!({"header": "x-region", "exists": true}), true),
        ];
        for (filter, expected) in cases {
            assert_eq!(parse(filter.clone()).matches(&event), *expected, "{filter}");
        }
    }

    #[test]
    fn combinators() {
        let event = order();
        let cases: &[(Value, bool)] = &[
            (
                json!({"all": [{"field": "$.amount", "gte": 100}, {"header": "x-region", "prefix": "eu-"}]}),
                true,
            ),
            (
                json!({"all": [{"field": "$.amount", "gte": 100}, {"header": "x-region", "prefix": "us-"}]}),
                false,
            ),
            (
                json!({"any": [{"field": "$.amount", "gte": 1000}, {"header": "x-region", "prefix": "eu-"}]}),
                true,
            ),
            (
                json!({"any": [{"field": "$.amount", "gte": 1000}, {"field": "$.currency", "eq": "USD"}]}),
                false,
            ),
            (json!({"not": {"field": "$.currency", "eq": "EUR"}}), false),
            (
                json!({"not": {"not": {"field": "$.currency", "eq": "EUR"}}}),
                true,
            ),
            (
                json!({"all": [
                    {"field": "$.data.amount", "gte": 100},
                    {"any": [
                        {"field": "$.currency", "in": ["EUR", "USD"]},
                        {"not": {"field": "$.test", "exists": true}}
                    ]},
                    {"header": "x-region", "prefix": "eu-"}
                ]}),
                true,
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(parse(filter.clone()).matches(&event), *expected, "{filter}");
        }
    }

    #[test]
    fn bodies_that_are_not_json_fail_every_field_condition() {
        let event = Event {
            body: None,
            headers: vec![("x-kind", "text")],
        };
        for filter in [
            json!({"field": "$.a", "exists": false}),
            json!({"field": "$", "exists": true}),
            json!({"field": "$.a", "eq": 1}),
        ] {
            assert!(!parse(filter.clone()).matches(&event), "{filter}");
        }
        assert!(parse(json!({"header": "x-kind", "eq": "text"})).matches(&event));
    }

    #[test]
    fn invalid_filters_name_the_node() {
        let cases: &[(Value, &str, &str)] = &[
            (json!("x"), "", "expected an object"),
            (json!({}), "", "needs one of"),
            (json!({"field": "$.a"}), "", "needs one operator"),
            (
                json!({"field": "$.a", "eq": 1, "gt": 2}),
                "",
                "exactly one operator",
            ),
            (
                json!({"field": "$.a", "header": "x", "eq": 1}),
                "",
                "exactly one of",
            ),
            (
                json!({"field": "$.a", "gtee": 1}),
                "",
                "unknown key \"gtee\"",
            ),
            (
                json!({"all": [{"field": "a", "eq": 1}]}),
                ".all[0].field",
                "must start with $",
            ),
            (json!({"all": []}), "", "at least one"),
            (
                json!({"any": {"field": "$.a", "eq": 1}}),
                "",
                "must be a list",
            ),
            (
                json!({"all": [{"field": "$.a", "eq": 1}], "eq": 1}),
                "",
                "takes no operator",
            ),
            (
                json!({"any": [{"field": "$.a", "eq": 1}, {"not": {"field": "$.b", "gt": "x"}}]}),
                ".any[1].not.gt",
                "compares numbers",
            ),
            (json!({"field": "$.a", "in": []}), ".in", "1 to"),
            (
                json!({"field": "$.a", "exists": "yes"}),
                ".exists",
                "true or false",
            ),
            (
                json!({"field": "$.a", "prefix": 1}),
                ".prefix",
                "takes a string",
            ),
            (
                json!({"header": "x-n", "eq": 5}),
                ".eq",
                "header values are strings",
            ),
            (
                json!({"header": "x-n", "in": ["a", 5]}),
                ".in",
                "header values are strings",
            ),
            (
                json!({"header": "bad name", "eq": "a"}),
                ".header",
                "not a valid header name",
            ),
            (json!({"field": 5, "eq": 1}), ".field", "must be a string"),
            (
                json!({"field": "$.a.", "eq": 1}),
                ".field",
                "followed by a name",
            ),
            (json!({"field": "$[x]", "eq": 1}), ".field", "integer index"),
            (json!({"field": "$['a", "eq": 1}), ".field", "unterminated"),
            (json!({"field": "$[0", "eq": 1}), ".field", "missing ']'"),
            (
                json!({"field": "$a", "eq": 1}),
                ".field",
                "expected '.name'",
            ),
        ];
        for (filter, path, message) in cases {
            let error = Filter::parse(filter).expect_err(&filter.to_string());
            assert_eq!(error.path, *path, "{filter}: {error}");
            assert!(error.message.contains(message), "{filter}: {error}");
        }
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let mut deep = json!({"field": "$.a", "eq": 1});
        for _ in 0..=MAX_DEPTH {
            deep = json!({ "not": deep });
        }
        let error = Filter::parse(&deep).expect_err("too deep");
        assert!(error.message.contains("levels deep"), "{error}");
        let wide: Vec<Value> = (0..MAX_NODES)
            .map(|i| json!({"field": "$.a", "eq": i}))
            .collect();
        let error = Filter::parse(&json!({ "any": wide })).expect_err("too many nodes");
        assert!(error.message.contains("at most"), "{error}");
    }

    #[test]
    fn paths_display_and_resolve() {
        let path = JsonPath::parse("$.a['b.c'][2]").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path.to_string(), r#"$["a"]["b.c"][2]"#);
        let doc = json!({"a": {"b.c": [0, 1, 2]}});
        assert_eq!(path.resolve(&doc), Some(&json!(2)));
        assert_eq!(
            JsonPath::parse("$").map(|p| p.resolve(&doc).cloned()),
            Ok(Some(doc.clone()))
        );
    }
}
