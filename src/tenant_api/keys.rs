//! Tenant API keys: `wok_<base64url of 32 random bytes>`, stored only as a SHA-256 digest in a
//! Secret labelled `webhook-operator.io/api-key=true` in the tenant's namespace. The namespace of
//! that Secret is the only namespace the key can touch.
//!
//! A plain SHA-256 is the right hash here: the keys carry 256 random bits, so there is nothing to
//! guess and no dictionary to precompute. Salted, slow password hashes (bcrypt, Argon2) protect
//! low-entropy secrets, and would cost every request tens of milliseconds.

use std::{collections::BTreeMap, fmt};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Label that marks a Secret as holding an API key digest.
pub const API_KEY_LABEL: &str = "webhook-operator.io/api-key";
/// Every key starts with this, so leaked keys are easy to recognise (and to scan for).
pub const KEY_PREFIX: &str = "wok_";
/// Data key of the key id in a key Secret (defaults to the Secret's name).
pub const KEY_ID_FIELD: &str = "keyId";
/// Data key of the lowercase hex SHA-256 of the key.
pub const DIGEST_FIELD: &str = "sha256";
/// Key Secrets are named `<prefix><key id>`.
pub const SECRET_NAME_PREFIX: &str = "webhook-api-key-";

/// A freshly issued key. `Debug` never prints it.
pub struct ApiKey(String);

impl ApiKey {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The key itself: shown to its owner once, never stored.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> [u8; 32] {
        digest(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Who a request authenticated as: a key of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub namespace: String,
    pub key_id: String,
}

/// One known key: its tenant, its id and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub namespace: String,
    pub key_id: String,
    pub digest: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySecretError {
    #[error("has no {DIGEST_FIELD:?} key")]
    MissingDigest,
    #[error("{DIGEST_FIELD:?} must be 64 hexadecimal characters (the SHA-256 of the key)")]
    BadDigest,
    #[error("{KEY_ID_FIELD:?} must be 1 to 63 lowercase letters, digits or '-'")]
    BadKeyId,
}

/// Reads a key Secret's data. Errors name the data key at fault, never a value.
pub fn record_from_secret(
    namespace: &str,
    secret_name: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<KeyRecord, KeySecretError> {
    let key_id = match data.get(KEY_ID_FIELD) {
        Some(id) => String::from_utf8(id.clone()).map_err(|_| KeySecretError::BadKeyId)?,
        None => secret_name
            .strip_prefix(SECRET_NAME_PREFIX)
            .unwrap_or(secret_name)
            .to_owned(),
    };
    if !valid_key_id(&key_id) {
        return Err(KeySecretError::BadKeyId);
    }
    let hex_digest = data
        .get(DIGEST_FIELD)
        .ok_or(KeySecretError::MissingDigest)?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest.trim_ascii(), &mut digest)
        .map_err(|_| KeySecretError::BadDigest)?;
    Ok(KeyRecord {
        namespace: namespace.to_owned(),
        key_id,
        digest,
    })
}

/// Key ids become part of a Secret name: a DNS label, a little shorter.
pub fn valid_key_id(id: &str) -> bool {
    let max = 63 - SECRET_NAME_PREFIX.len();
    !id.is_empty()
        && id.len() <= max
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// The Secret that makes `key` valid for `namespace`: its digest, never the key.
pub fn key_secret(namespace: &str, key_id: &str, key: &ApiKey) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("{SECRET_NAME_PREFIX}{key_id}")),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(API_KEY_LABEL.into(), "true".into())])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([
            (KEY_ID_FIELD.into(), key_id.to_owned()),
            (DIGEST_FIELD.into(), hex::encode(key.digest())),
        ])),
        ..Default::default()
    }
}

/// Every valid key, for authentication.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    records: Vec<KeyRecord>,
}

impl KeyIndex {
    pub fn new(records: Vec<KeyRecord>) -> Self {
        Self { records }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The principal of `presented`, if it is a known key. Every digest is compared, in constant
    /// time, whether or not an earlier one matched: the time taken says nothing about which key
    /// (or whether any key) matched, nor how much of a guess was right.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let digest = digest(presented);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, record) in self.records.iter().enumerate() {
            let equal = record.digest.ct_eq(&digest);
            index = u64::conditional_select(&index, &(i as u64), equal);
            found |= equal;
        }
        if !bool::from(found) {
            return None;
        }
        let record = self.records.get(usize::try_from(index).ok()?)?;
        Some(Principal {
            namespace: record.namespace.clone(),
            key_id: record.key_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
        secret
            .string_data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect()
    }

    #[test]
    fn issued_keys_authenticate_as_their_namespace_only() {
        let acme = ApiKey::generate();
        let globex = ApiKey::generate();
        assert!(acme.expose().starts_with(KEY_PREFIX));
        assert_eq!(acme.expose().len(), KEY_PREFIX.len() + 43);
        assert_ne!(acme.expose(), globex.expose());
        let records = [("acme", "ci", &acme), ("globex", "ops", &globex)]
            .into_iter()
            .map(|(ns, id, key)| {
                let secret = key_secret(ns, id, key);
                let name = secret.metadata.name.clone().unwrap_or_default();
                record_from_secret(ns, &name, &data(&secret))
            })
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let index = KeyIndex::new(records);
        assert_eq!(
            index.authenticate(acme.expose()),
            Some(Principal {
                namespace: "acme".into(),
                key_id: "ci".into()
            })
        );
        assert_eq!(
            index.authenticate(globex.expose()).map(|p| p.namespace),
            Some("globex".into())
        );
        assert_eq!(index.authenticate(""), None);
        assert_eq!(index.authenticate(&acme.expose()[..20]), None);
        assert_eq!(index.authenticate(&format!("{}x", acme.expose())), None);
        assert_eq!(KeyIndex::default().authenticate(acme.expose()), None);
    }

    #[test]
    fn key_secrets_hold_the_digest_not_the_key() {
        let key = ApiKey::generate();
        let secret = key_secret("acme", "ci", &key);
        let yaml = serde_saphyr::to_string(&secret).unwrap();
        assert!(!yaml.contains(key.expose()), "{yaml}");
        assert!(!yaml.contains(&key.expose()[KEY_PREFIX.len()..]), "{yaml}");
        assert!(yaml.contains(&hex::encode(key.digest())));
        assert!(yaml.contains("webhook-operator.io/api-key"));
        assert_eq!(format!("{key:?}"), "ApiKey(..)");
    }

    #[test]
    fn malformed_key_secrets_name_the_field() {
        let ok = hex::encode([7u8; 32]);
        let secret = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(
            record_from_secret("acme", "webhook-api-key-x", &secret(&[])),
            Err(KeySecretError::MissingDigest)
        );
        assert_eq!(
            record_from_secret("acme", "k", &secret(&[(DIGEST_FIELD, "abc")])),
            Err(KeySecretError::BadDigest)
        );
        assert_eq!(
            record_from_secret(
                "acme",
                "k",
                &secret(&[(DIGEST_FIELD, &ok), (KEY_ID_FIELD, "Bad_Id")])
            ),
            Err(KeySecretError::BadKeyId)
        );
        // Without keyId, the id is the Secret's name after the prefix; a trailing newline (as
        // `sha256sum | cut` leaves) is fine.
        let record = record_from_secret(
            "acme",
            "webhook-api-key-deploy",
            &secret(&[(DIGEST_FIELD, &format!("{ok}\n"))]),
        )
        .unwrap();
        assert_eq!(record.key_id, "deploy");
        assert_eq!(record.digest, [7u8; 32]);
    }
}
