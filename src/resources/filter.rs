//! The `spec.filter` field of an EventSubscription: its CRD schema and admission rules.
//!
//! A CRD schema cannot be recursive, so the first [`TYPED_LEVELS`] levels are typed and checked
//! at admission (one of all/any/not/field/header per node, exactly one operator per condition);
//! deeper levels are kept as they are and checked by the controller, which reports a broken
//! filter as `InvalidFilter` naming the node. The whole filter is parsed by
//! [`crate::model::filter::Filter::parse`] in any case.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Levels of nesting the CRD schema types and validates at admission.
pub const TYPED_LEVELS: usize = 2;

pub const ONE_SUBJECT_RULE: &str = "[has(self.all), has(self.any), has(self.not), has(self.field), has(self.header)].exists_one(x, x)";
pub const ONE_OPERATOR_RULE: &str = "!(has(self.field) || has(self.header)) || [has(self.eq), has(self.__in__), has(self.gt), has(self.gte), has(self.lt), has(self.lte), has(self.exists), has(self.prefix), has(self.suffix)].exists_one(x, x)";
pub const NO_OPERATOR_RULE: &str = "has(self.field) || has(self.header) || ![has(self.eq), has(self.__in__), has(self.gt), has(self.gte), has(self.lt), has(self.lte), has(self.exists), has(self.prefix), has(self.suffix)].exists(x, x)";

/// A payload filter as written; kept as JSON so that whatever the API server accepts can be
/// read (a typed field failing to deserialise would break the watch of every subscription).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
pub struct FilterSpec(pub Value);

impl JsonSchema for FilterSpec {
    fn schema_name() -> Cow<'static, str> {
        "FilterSpec".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        Schema::try_from(node(TYPED_LEVELS)).unwrap_or_default()
    }
}

fn node(levels: usize) -> Value {
    if levels == 0 {
        return json!({
            "description": "A nested filter, checked by the controller.",
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        });
    }
    // Descriptions on the outermost level only: nested levels repeat the same fields.
    let top = levels == TYPED_LEVELS;
    let describe = |mut schema: Value, what: &str| {
        if top && let Some(object) = schema.as_object_mut() {
            object.insert("description".into(), what.into());
        }
        schema
    };
    let child = node(levels - 1);
    // Nullable, or the API server would prune `eq: null`.
    let any_json = json!({ "nullable": true, "x-kubernetes-preserve-unknown-fields": true });
    let list = |items: &Value, what: &str| {
        describe(
            json!({ "type": "array", "minItems": 1, "maxItems": 32, "items": items }),
            what,
        )
    };
    let number = |what: &str| describe(json!({ "type": "number" }), what);
    let text = |what: &str| describe(json!({ "type": "string", "maxLength": 1024 }), what);
    let schema = json!({
        "type": "object",
        "properties": {
            "all": list(&child, "Matches when every filter matches."),
            "any": list(&child, "Matches when at least one filter matches."),
            "not": child,
            "field": describe(
                json!({ "type": "string", "pattern": "^\\$", "maxLength": 256 }),
                "JSONPath into the JSON body: $.data.amount, $.items[0].sku, $['key.with.dots'].",
            ),
            "header": describe(
                json!({ "type": "string", "minLength": 1, "maxLength": 256 }),
                "A NATS header of the event (name case-insensitive).",
            ),
            "eq": describe(
                json!({ "nullable": true, "x-kubernetes-preserve-unknown-fields": true }),
                "Equal to this JSON value (numbers by value, no type coercion).",
            ),
            "in": describe(
                json!({ "type": "array", "minItems": 1, "maxItems": 256, "items": any_json }),
                "Equal to one of these values.",
            ),
            "gt": number("A number greater than this."),
            "gte": number("A number greater than or equal to this."),
            "lt": number("A number less than this."),
            "lte": number("A number less than or equal to this."),
            "exists": describe(
                json!({ "type": "boolean" }),
                "true: the field or header is present (even if null); false: it is absent.",
            ),
            "prefix": text("A string starting with this."),
            "suffix": text("A string ending with this.")
        },
        "x-kubernetes-validations": [
            { "rule": ONE_SUBJECT_RULE, "message": "a filter has exactly one of all, any, not, field or header" },
            { "rule": ONE_OPERATOR_RULE, "message": "a field or header condition has exactly one operator: eq, in, gt, gte, lt, lte, exists, prefix or suffix" },
            { "rule": NO_OPERATOR_RULE, "message": "all, any and not take no operator" }
        ]
    });
    describe(
        schema,
        "A payload filter: all, any or not of nested filters, or a condition on one field (JSONPath into the JSON body) or header with exactly one operator. Missing fields and type mismatches are false; nested levels beyond the second are checked by the controller.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::filter::Filter;

    /// Evaluates the admission rules on one node as the API server would: `self` is the node,
    /// with the property `in` (a CEL keyword) escaped to `__in__`.
    fn admitted(node: &Value) -> bool {
        let mut escaped = node.clone();
        if let Some(object) = escaped.as_object_mut()
            && let Some(list) = object.remove("in")
        {
            object.insert("__in__".into(), list);
        }
        [ONE_SUBJECT_RULE, ONE_OPERATOR_RULE, NO_OPERATOR_RULE]
            .iter()
            .all(|rule| {
                let program = cel::Program::compile(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
                let mut context = cel::Context::default();
                context
                    .add_variable(
                        "self",
                        cel::to_value(&escaped).unwrap_or_else(|e| panic!("{e}")),
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                match program.execute(&context) {
                    Ok(cel::Value::Bool(ok)) => ok,
                    other => panic!("{rule} on {node}: {other:?}"),
                }
            })
    }

    /// The admission rules accept a node exactly when the controller's parser does.
    #[test]
    fn admission_rules_agree_with_the_parser() {
        let leaf = json!({"field": "$.a", "eq": 1});
        let samples = [
            json!({"field": "$.a", "eq": 1}),
            json!({"field": "$.a", "in": [1, 2]}),
            json!({"field": "$.a", "gt": 1}),
            json!({"field": "$.a", "gte": 1}),
            json!({"field": "$.a", "lt": 1}),
            json!({"field": "$.a", "lte": 1}),
            json!({"field": "$.a", "exists": true}),
            json!({"field": "$.a", "prefix": "x"}),
            json!({"header": "x-a", "suffix": "x"}),
            json!({"header": "x-a", "in": ["x"]}),
            json!({"all": [leaf]}),
            json!({"any": [leaf]}),
            json!({"not": leaf}),
            json!({}),
            json!({"field": "$.a"}),
            json!({"header": "x-a"}),
            json!({"field": "$.a", "eq": 1, "gt": 0}),
            json!({"field": "$.a", "in": [1], "exists": true}),
            json!({"field": "$.a", "header": "x-a", "eq": 1}),
            json!({"all": [leaf], "any": [leaf]}),
            json!({"all": [leaf], "eq": 1}),
            json!({"not": leaf, "in": [1]}),
            json!({"eq": 1}),
        ];
        for sample in samples {
            assert_eq!(
                admitted(&sample),
                Filter::parse(&sample).is_ok(),
                "{sample}"
            );
        }
    }

    #[test]
    fn the_schema_types_two_levels_and_keeps_the_rest() {
        let schema = node(TYPED_LEVELS);
        let nested = &schema["properties"]["all"]["items"]["properties"]["not"];
        assert_eq!(nested["x-kubernetes-preserve-unknown-fields"], true);
        assert!(schema["properties"]["all"]["items"]["x-kubernetes-validations"].is_array());
    }
}
