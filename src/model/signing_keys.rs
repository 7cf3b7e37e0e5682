//! Signing key material as stored in Secrets: one or more `whsec_<base64>` keys separated by
//! whitespace. Every key signs, so receivers can rotate without downtime.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};

pub const KEY_PREFIX: &str = "whsec_";
/// Shortest key accepted (bytes after decoding); Standard Webhooks recommends 24 to 64.
pub const MIN_KEY_BYTES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    #[error("no signing key present")]
    Empty,
    #[error("key {index} does not start with {KEY_PREFIX:?}")]
    MissingPrefix { index: usize },
    #[error("key {index} is not valid base64 after {KEY_PREFIX:?}")]
    NotBase64 { index: usize },
    #[error("key {index} is {len} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort { index: usize, len: usize },
}

/// Decoded signing keys. `Debug` never prints key material.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeys(Vec<Vec<u8>>);

impl SigningKeys {
    pub fn parse(value: &[u8]) -> Result<Self, SigningKeyError> {
        let text = String::from_utf8_lossy(value);
        let mut keys = Vec::new();
        for (index, word) in text.split_whitespace().enumerate() {
            let encoded = word
                .strip_prefix(KEY_PREFIX)
                .ok_or(SigningKeyError::MissingPrefix { index })?;
            let key = STANDARD
                .decode(encoded)
                .map_err(|_| SigningKeyError::NotBase64 { index })?;
            if key.len() < MIN_KEY_BYTES {
                return Err(SigningKeyError::TooShort {
                    index,
                    len: key.len(),
                });
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(SigningKeyError::Empty);
        }
        Ok(Self(keys))
    }

    /// A fresh random key in Secret form (`whsec_` + base64 of 32 random bytes).
    pub fn generate() -> String {
        let bytes: [u8; 32] = rand::random();
        format!("{KEY_PREFIX}{}", STANDARD.encode(bytes))
    }

    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeys({} keys, redacted)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_or_more_keys() {
        let a = SigningKeys::generate();
        let b = SigningKeys::generate();
        assert_eq!(SigningKeys::parse(a.as_bytes()).map(|k| k.len()), Ok(1));
        assert_eq!(
            SigningKeys::parse(format!("{a}\n {b}\n").as_bytes()).map(|k| k.len()),
            Ok(2)
        );
    }

    #[test]
    fn rejects_bad_material_without_echoing_it() {
        assert_eq!(SigningKeys::parse(b"  "), Err(SigningKeyError::Empty));
        assert_eq!(
            SigningKeys::parse(b"hunter2"),
            Err(SigningKeyError::MissingPrefix { index: 0 })
        );
        assert_eq!(
            SigningKeys::parse(b"whsec_!!!"),
            Err(SigningKeyError::NotBase64 { index: 0 })
        );
        assert_eq!(
            SigningKeys::parse(b"whsec_c2hvcnQ="),
            Err(SigningKeyError::TooShort { index: 0, len: 5 })
        );
        let err = SigningKeys::parse(b"whsec_!!!")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("!!!"));
        let keys = SigningKeys::parse(SigningKeys::generate().as_bytes());
        assert!(format!("{keys:?}").contains("redacted"));
    }
}
