//! Kubernetes custom resources (API group `webhook-operator.io/v1alpha1`) and their compilation
//! into the shared model.

pub mod compile;
pub mod event_subscription;
pub mod event_type;
pub mod filter;
pub mod object_data;
pub mod signing_secret;
pub mod webhook_endpoint;

pub use event_subscription::{EventSubscription, EventSubscriptionSpec, EventSubscriptionStatus};
pub use event_type::{EventType, EventTypeSpec, EventTypeStatus};
pub use webhook_endpoint::{WebhookEndpoint, WebhookEndpointSpec, WebhookEndpointStatus};

use kube::CustomResourceExt;

/// The CRDs as multi-document YAML: the output of `webhook-operator crdgen` and of `crds/`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in [
        WebhookEndpoint::crd(),
        EventSubscription::crd(),
        EventType::crd(),
    ] {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{
        event_subscription::EVENT_TYPE_PATTERN, event_type::EVENT_TYPE_NAME_PATTERN,
        webhook_endpoint::URL_PATTERN,
    };
    use crate::model::{
        duration,
        event_type::{Pattern, validate_event_type},
    };

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern)
            .map(|r| r.is_match(text))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The admission patterns must agree with the parsers behind them, or the API server would
    /// accept what the controller rejects (or the reverse).
    #[test]
    fn admission_patterns_agree_with_the_parsers() {
        for text in [
            "order.paid",
            "invoice.*",
            "payment.>",
            ">",
            "*",
            "*.paid",
            "a.*.c.>",
            "a..b",
            "a.>.b",
            "ord*",
            "",
            ".a",
            "a.",
            "a b",
        ] {
            assert_eq!(
                matches(EVENT_TYPE_PATTERN, text),
                Pattern::parse(text).is_ok(),
                "{text:?}"
            );
            assert_eq!(
                matches(EVENT_TYPE_NAME_PATTERN, text),
                validate_event_type(text).is_ok(),
                "EventType name {text:?}"
            );
        }
        for text in [
            "500ms", "5s", "1m30s", "6h", "1.5h", "10us", "5", "s", "-5s", "1d", "5 s", "",
        ] {
            assert_eq!(
                matches(duration::GO_DURATION_PATTERN, text),
                duration::parse(text).is_ok(),
                "{text:?}"
            );
        }
        for (text, ok) in [
            ("https://orders.acme.example/hooks", true),
            ("http://10.0.0.1:8080/x?y=1", true),
            ("HTTPS://EXAMPLE.COM", true),
            ("ftp://files.example", false),
            ("https://", false),
            ("orders.acme.example/hooks", false),
            ("https://exa mple.com", false),
            ("https://user:pw@example.com/hook", false),
            ("https://example.com/hook?next=a@b", true),
        ] {
            assert_eq!(matches(URL_PATTERN, text), ok, "{text:?}");
        }
    }

    #[test]
    fn crds_carry_validation_and_printer_columns() {
        let yaml = super::crd_yaml().unwrap_or_default();
        for needle in [
            "x-kubernetes-validations",
            "x-kubernetes-list-type: map",
            "name: Health",
            "name: Dead",
            "kind: EventType",
            "name: Deprecated",
            "x-kubernetes-preserve-unknown-fields",
            "subresources",
        ] {
            assert!(yaml.contains(needle), "CRDs lack {needle}");
        }
    }

    proptest::proptest! {
        /// On any input, the admission pattern and the parser agree.
        #[test]
        fn admission_pattern_agrees_with_the_parser_on_any_text(text in "[ab.*> ]{0,10}") {
            proptest::prop_assert_eq!(matches(EVENT_TYPE_PATTERN, &text), Pattern::parse(&text).is_ok(), "{:?}", text);
        }
    }
}
