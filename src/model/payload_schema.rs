//! JSON Schemas of event payloads, from the tenant's event catalogue (`EventType` resources).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most validation errors reported for one payload.
const MAX_ERRORS: usize = 3;

/// What happens to an event whose payload fails its type's schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnInvalid {
    /// Dead-letter it with reason `SchemaValidationFailed` and the validation errors.
    #[default]
    DeadLetter,
    /// Deliver it anyway, flagged with the header `webhook-schema-invalid: true`.
    Deliver,
}

impl OnInvalid {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The schema of one event type, as routes carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadSchema {
    pub event_type: String,
    pub schema: Value,
    #[serde(default, skip_serializing_if = "OnInvalid::is_default")]
    pub on_invalid: OnInvalid,
}

/// A schema compiled for validation. Remote and file `$ref`s are not resolved: a schema that
/// needs them does not compile.
pub struct CompiledSchema {
    validator: jsonschema::Validator,
    pub on_invalid: OnInvalid,
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("on_invalid", &self.on_invalid)
            .finish_non_exhaustive()
    }
}

impl CompiledSchema {
    pub fn compile(schema: &Value, on_invalid: OnInvalid) -> Result<Self, String> {
        let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
        Ok(Self {
            validator,
            on_invalid,
        })
    }

    /// Checks a payload (`None`: not JSON). The error names where the payload fails, never its
    /// values: they may be personal data, and the message ends up in status and logs.
    pub fn check(&self, payload: Option<&Value>) -> Result<(), String> {
        let Some(payload) = payload else {
            return Err("the payload is not JSON".into());
        };
        let mut errors = self.validator.iter_errors(payload).peekable();
        if errors.peek().is_none() {
            return Ok(());
        }
        let mut found: Vec<String> = Vec::new();
        let mut more = 0;
        for error in errors {
            if found.len() < MAX_ERRORS {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() { "/".into() } else { at };
                found.push(format!("at {at}: {}", error.masked()));
            } else {
                more += 1;
            }
        }
        let mut message = found.join("; ");
        if more > 0 {
            message.push_str(&format!("; and {more} more"));
        }
        Err(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_schema() -> CompiledSchema {
        CompiledSchema::compile(
            &json!({
                "type": "object",
                "required": ["order", "amount"],
                "properties": {
                    "order": {"type": "integer"},
                    "amount": {"type": "number", "minimum": 0},
                    "email": {"type": "string"}
                }
            }),
            OnInvalid::DeadLetter,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn valid_payloads_pass_and_invalid_ones_say_where() {
        let schema = order_schema();
        assert_eq!(
            schema.check(Some(&json!({"order": 1, "amount": 5}))),
            Ok(())
        );
        let error = schema
            .check(Some(
                &json!({"order": "x", "amount": -1, "email": "secret@example.com"}),
            ))
            .expect_err("invalid");
        assert!(error.contains("at /order"), "{error}");
        assert!(
            error.contains("at /amount: value is less than the minimum of 0"),
            "{error}"
        );
        assert!(!error.contains("secret@example.com"), "{error}");
        let missing = schema.check(Some(&json!({}))).expect_err("missing");
        assert!(missing.contains("at /"), "{missing}");
        assert!(schema.check(None).is_err());
    }

    #[test]
    fn many_errors_are_summarised() {
        let schema = CompiledSchema::compile(
            &json!({"type": "array", "items": {"type": "integer"}}),
            OnInvalid::Deliver,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let error = schema
            .check(Some(&json!(["a", "b", "c", "d", "e"])))
            .expect_err("invalid");
        assert!(error.ends_with("and 2 more"), "{error}");
    }

    #[test]
    fn broken_schemas_and_remote_refs_do_not_compile() {
        assert!(CompiledSchema::compile(&json!({"type": 5}), OnInvalid::DeadLetter).is_err());
        assert!(
            CompiledSchema::compile(
                &json!({"$ref": "https://schemas.example/order.json"}),
                OnInvalid::DeadLetter
            )
            .is_err()
        );
    }
}
