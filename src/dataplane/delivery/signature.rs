//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per
//! active key, space-separated.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::model::signing_keys::SigningKeys;

/// Value of the `webhook-signature` header.
pub fn sign(keys: &SigningKeys, id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let mut header = String::new();
    for key in keys.keys() {
        // Keys are validated non-empty on parse, and HMAC accepts keys of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            continue;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str("v1,");
        header.push_str(&STANDARD.encode(mac.finalize().into_bytes()));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // Test vector from the Standard Webhooks specification's reference implementations.
        let keys = SigningKeys::parse(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_or_else(|e| panic!("{e}"));
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&keys, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_key_signs() {
        let two = format!("{} {}", SigningKeys::generate(), SigningKeys::generate());
        let keys = SigningKeys::parse(two.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let header = sign(&keys, "id", 1, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|s| s.starts_with("v1,")));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// One signature per key, each verified by the independent standardwebhooks crate, for
        /// any id, body and number of keys. (That crate verifies UTF-8 payloads only; the
        /// signature itself covers the raw bytes.)
        #[test]
        fn every_signature_verifies_independently(
            id in "[a-zA-Z0-9_.:-]{1,40}",
            body in "\\PC{0,200}",
            count in 1usize..4,
        ) {
            let secrets: Vec<String> = (0..count).map(|_| SigningKeys::generate()).collect();
            let keys = SigningKeys::parse(secrets.join(" ").as_bytes())
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let timestamp = jiff::Timestamp::now().as_second();
            let body = body.into_bytes();
            let header = sign(&keys, &id, timestamp, &body);
            proptest::prop_assert_eq!(header.split(' ').count(), count);
            let mut headers = http::HeaderMap::new();
            headers.insert("webhook-id", id.parse().map_err(|_| proptest::test_runner::TestCaseError::fail("id"))?);
            headers.insert("webhook-timestamp", timestamp.into());
            headers.insert("webhook-signature", header.parse().map_err(|_| proptest::test_runner::TestCaseError::fail("header"))?);
            for secret in &secrets {
                let webhook = standardwebhooks::Webhook::new(secret)
                    .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                proptest::prop_assert!(webhook.verify(&body, &headers).is_ok());
            }
            let stranger = standardwebhooks::Webhook::new(&SigningKeys::generate())
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert!(stranger.verify(&body, &headers).is_err());
        }
    }
}
