//! Signing key material as stored in Secrets: one or more `whsec_<base64>` keys separated by
//! whitespace. Every key signs, so receivers can rotate without downtime.
//!
//! [`KeyRing`] is rotation: a new key goes first, the others keep signing for an overlap and
//! are then dropped. When each old key stops signing is kept beside the keys, by fingerprint,
//! so that it never names the key itself.

use std::{collections::BTreeMap, fmt, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "whsec_";
/// Shortest key accepted (bytes after decoding); Standard Webhooks recommends 24 to 64.
pub const MIN_KEY_BYTES: usize = 16;
/// How long the previous keys keep signing after a rotation, unless told otherwise.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The longest overlap accepted: a rotation is meant to end.
pub const MAX_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// `overlap` if it is at most [`MAX_OVERLAP`]; the error says so.
pub fn check_overlap(overlap: Duration) -> Result<Duration, String> {
    if overlap <= MAX_OVERLAP {
        Ok(overlap)
    } else {
        Err(format!(
            "the overlap may be at most {}h",
            MAX_OVERLAP.as_secs() / 3600
        ))
    }
}

/// A short, one-way name of a key (hex of the first 8 bytes of SHA-256 of its Secret form):
/// enough to tell a Secret's keys apart, nothing to sign with.
pub fn fingerprint(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The keys of one signing Secret, newest first, with when each previous key stops signing.
/// `Debug` never prints key material.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

#[derive(Clone, PartialEq, Eq)]
struct RingKey {
    /// `whsec_...`, as stored.
    key: String,
    /// When it is dropped; `None`: it signs until rotated out.
    expires: Option<Timestamp>,
}

impl KeyRing {
    /// Reads a Secret's value (every key checked as [`SigningKeys::parse`] does) and the expiry
    /// map kept beside it ([`Self::expiry`]). An unreadable map, or entries of keys no longer in
    /// the value, are ignored: the keys then simply do not expire.
    pub fn parse(value: &[u8], expiry: Option<&str>) -> Result<Self, SigningKeyError> {
        SigningKeys::parse(value)?;
        let expiry: BTreeMap<String, Timestamp> = expiry
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        let keys = String::from_utf8_lossy(value)
            .split_whitespace()
            .map(|key| RingKey {
                expires: expiry.get(&fingerprint(key)).copied(),
                key: key.to_owned(),
            })
            .collect();
        Ok(Self { keys })
    }

    /// Puts `new_key` first. The keys already there stop signing at `now + overlap` (or earlier,
    /// if an earlier rotation said so); with no overlap they go at once.
    pub fn rotate(&mut self, new_key: String, now: Timestamp, overlap: Duration) {
        let until = now.checked_add(overlap).unwrap_or(Timestamp::MAX);
        for old in &mut self.keys {
            old.expires = Some(old.expires.map_or(until, |at| at.min(until)));
        }
        self.keys.insert(
            0,
            RingKey {
                key: new_key,
                expires: None,
            },
        );
        self.drop_expired(now);
    }

    /// Drops the previous keys whose time has come; the newest key always stays. Returns how
    /// many went.
    pub fn drop_expired(&mut self, now: Timestamp) -> usize {
        let before = self.keys.len();
        let mut index = 0;
        self.keys.retain(|k| {
            index += 1;
            index == 1 || k.expires.is_none_or(|at| at > now)
        });
        before - self.keys.len()
    }

    /// The next time a key is to be dropped.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.previous().filter_map(|k| k.expires).min()
    }

    /// When the previous keys have all been dropped, if they all expire.
    pub fn previous_keys_expire(&self) -> Option<Timestamp> {
        let mut times = self.previous().map(|k| k.expires);
        let first = times.next()??;
        times.try_fold(first, |latest, at| Some(latest.max(at?)))
    }

    fn previous(&self) -> impl Iterator<Item = &RingKey> {
        self.keys.iter().skip(1)
    }

    /// The Secret's value: the keys, newest first, separated by a space.
    pub fn value(&self) -> String {
        self.keys
            .iter()
            .map(|k| k.key.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The expiry map kept beside the value (JSON: fingerprint to RFC 3339 time); `None` when
    /// no key expires.
    pub fn expiry(&self) -> Option<String> {
        let map: BTreeMap<String, Timestamp> = self
            .keys
            .iter()
            .filter_map(|k| Some((fingerprint(&k.key), k.expires?)))
            .collect();
        (!map.is_empty()).then(|| serde_json::to_string(&map).unwrap_or_default())
    }

    /// The keys themselves, newest first: for their owner's eyes only.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.key.as_str())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expires: Vec<_> = self.keys.iter().map(|k| k.expires).collect();
        write!(
            f,
            "KeyRing({} keys, redacted, expires {expires:?})",
            self.len()
        )
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

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_rotation_puts_the_new_key_first_and_expires_the_old_after_the_overlap() {
        let (old, new) = (SigningKeys::generate(), SigningKeys::generate());
        let mut ring = KeyRing::parse(old.as_bytes(), None).unwrap();
        assert_eq!((ring.next_expiry(), ring.expiry()), (None, None));
        ring.rotate(new.clone(), at(0), 24 * HOUR);
        assert_eq!(
            ring.keys().collect::<Vec<_>>(),
            [new.as_str(), old.as_str()]
        );
        assert_eq!(ring.value(), format!("{new} {old}"));
        assert_eq!(ring.next_expiry(), Some(at(24 * 3600)));
        assert_eq!(ring.previous_keys_expire(), Some(at(24 * 3600)));

        // The value and the expiry map are what a Secret keeps: read back, the same ring.
        let expiry = ring.expiry().unwrap();
        assert!(expiry.contains(&fingerprint(&old)) && !expiry.contains(&fingerprint(&new)));
        assert_eq!(
            KeyRing::parse(ring.value().as_bytes(), Some(&expiry)).unwrap(),
            ring
        );

        assert_eq!(
            ring.drop_expired(at(24 * 3600 - 1)),
            0,
            "still in its overlap"
        );
        assert_eq!(ring.drop_expired(at(24 * 3600)), 1);
        assert_eq!(ring.keys().collect::<Vec<_>>(), [new.as_str()]);
        assert_eq!((ring.next_expiry(), ring.expiry()), (None, None));
    }

    #[test]
    fn rotating_again_keeps_the_earlier_expiry_and_a_zero_overlap_drops_at_once() {
        let keys: Vec<String> = (0..4).map(|_| SigningKeys::generate()).collect();
        let mut ring = KeyRing::parse(keys[0].as_bytes(), None).unwrap();
        ring.rotate(keys[1].clone(), at(0), 2 * HOUR);
        ring.rotate(keys[2].clone(), at(3600), 24 * HOUR);
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.next_expiry(), Some(at(2 * 3600)), "the first old key");
        assert_eq!(ring.previous_keys_expire(), Some(at(25 * 3600)));
        assert_eq!(ring.drop_expired(at(2 * 3600)), 1);
        assert_eq!(
            ring.keys().collect::<Vec<_>>(),
            [keys[2].as_str(), keys[1].as_str()]
        );
        // A leaked key: rotate without overlap.
        ring.rotate(keys[3].clone(), at(3 * 3600), Duration::ZERO);
        assert_eq!(ring.keys().collect::<Vec<_>>(), [keys[3].as_str()]);
    }

    #[test]
    fn keys_added_by_hand_never_expire_and_the_newest_always_stays() {
        let (a, b) = (SigningKeys::generate(), SigningKeys::generate());
        // Two keys without an expiry map (the manual procedure): nothing expires.
        let mut ring = KeyRing::parse(format!("{a}\n{b}").as_bytes(), None).unwrap();
        assert_eq!(ring.drop_expired(at(1_000_000)), 0);
        assert_eq!(ring.previous_keys_expire(), None);
        // A map naming the first key (someone reordered the value): the first key stays.
        let expiry = format!("{{\"{}\":\"2020-01-01T00:00:00Z\"}}", fingerprint(&a));
        let mut ring = KeyRing::parse(format!("{a} {b}").as_bytes(), Some(&expiry)).unwrap();
        assert_eq!(ring.drop_expired(at(0)), 0);
        // An unreadable map is no expiry at all, and bad keys are refused as before.
        assert!(KeyRing::parse(a.as_bytes(), Some("{not json")).is_ok());
        assert_eq!(
            KeyRing::parse(b"whsec_!!!", None),
            Err(SigningKeyError::NotBase64 { index: 0 })
        );
        assert!(!format!("{ring:?}").contains(&a[KEY_PREFIX.len()..]));
    }

    #[test]
    fn overlaps_are_bounded_and_fingerprints_reveal_nothing_of_the_key() {
        assert_eq!(check_overlap(DEFAULT_OVERLAP), Ok(DEFAULT_OVERLAP));
        assert_eq!(check_overlap(Duration::ZERO), Ok(Duration::ZERO));
        assert!(check_overlap(MAX_OVERLAP + Duration::from_secs(1)).is_err());
        let key = SigningKeys::generate();
        let print = fingerprint(&key);
        assert_eq!(print.len(), 16);
        assert!(!key.contains(&print));
    }

    proptest::proptest! {
        /// Whatever rotations and clean-ups happen in whatever order: the newest key is first
        /// and never dropped, no previous key outlives its expiry after a clean-up, and a ring
        /// survives being written to a Secret and read back.
        #[test]
        fn rotations_and_clean_ups_keep_the_ring_sound(
            steps in proptest::collection::vec((proptest::bool::ANY, 0u64..100_000, 0u64..200_000), 1..12)
        ) {
            let mut ring = KeyRing::parse(SigningKeys::generate().as_bytes(), None).unwrap();
            let mut now = 0i64;
            for (rotate, advance, overlap) in steps {
                now += advance as i64;
                if rotate {
                    let key = SigningKeys::generate();
                    ring.rotate(key.clone(), at(now), Duration::from_secs(overlap));
                    proptest::prop_assert_eq!(ring.keys().next(), Some(key.as_str()));
                } else {
                    ring.drop_expired(at(now));
                }
                proptest::prop_assert!(!ring.is_empty());
                proptest::prop_assert!(ring.next_expiry().is_none_or(|t| t > at(now)));
                let read = KeyRing::parse(ring.value().as_bytes(), ring.expiry().as_deref()).unwrap();
                proptest::prop_assert_eq!(&read, &ring);
            }
        }
    }
}
