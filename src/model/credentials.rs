//! Values endpoints reference in their namespace's Secrets and ConfigMaps: signing keys, the
//! `Authorization` credentials and a CA bundle. The control plane checks them to report a
//! reason; delivery resolves them into what it sends. Neither ever puts a value in a message.

use std::{collections::BTreeMap, fmt};

use base64::{Engine, engine::general_purpose::STANDARD};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use sha2::{Digest, Sha256};

use super::{
    endpoint::{EndpointAuth, ObjectKey, ObjectKind, SecretLocation},
    signing_keys::SigningKeys,
};

/// Key -> value of one Secret or ConfigMap.
pub type ObjectData = BTreeMap<String, Vec<u8>>;

/// The Secrets and ConfigMaps of one namespace, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceData {
    pub secrets: BTreeMap<String, ObjectData>,
    pub config_maps: BTreeMap<String, ObjectData>,
}

/// Why a referenced value is unusable. `reason` is a CamelCase condition reason; `field` the
/// spec field that names the reference. The message never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ReferenceProblem {
    pub reason: &'static str,
    pub field: &'static str,
    pub message: String,
}

impl NamespaceData {
    /// The value at `reference`, or why there is none.
    pub fn value(
        &self,
        reference: &ObjectKey,
        field: &'static str,
    ) -> Result<&[u8], ReferenceProblem> {
        let (objects, not_found, key_missing) = match reference.kind {
            ObjectKind::Secret => (&self.secrets, "SecretNotFound", "SecretKeyMissing"),
            ObjectKind::ConfigMap => (
                &self.config_maps,
                "ConfigMapNotFound",
                "ConfigMapKeyMissing",
            ),
        };
        let kind = reference.kind;
        let object = objects
            .get(&reference.name)
            .ok_or_else(|| ReferenceProblem {
                reason: not_found,
                field,
                message: format!("{kind} {:?} does not exist", reference.name),
            })?;
        object
            .get(&reference.key)
            .map(Vec::as_slice)
            .ok_or_else(|| ReferenceProblem {
                reason: key_missing,
                field,
                message: format!("{kind} {:?} has no key {:?}", reference.name, reference.key),
            })
    }

    fn secret(
        &self,
        name: &str,
        key: &str,
        field: &'static str,
    ) -> Result<&[u8], ReferenceProblem> {
        self.value(
            &ObjectKey {
                kind: ObjectKind::Secret,
                name: name.to_owned(),
                key: key.to_owned(),
            },
            field,
        )
    }

    /// The signing keys at `location` (`spec.secretRef`).
    pub fn signing_keys(&self, location: &SecretLocation) -> Result<SigningKeys, ReferenceProblem> {
        const FIELD: &str = "spec.secretRef";
        let value = self.secret(&location.name, &location.key, FIELD)?;
        SigningKeys::parse(value).map_err(|e| ReferenceProblem {
            reason: "InvalidSecret",
            field: FIELD,
            message: format!("Secret {:?} key {:?}: {e}", location.name, location.key),
        })
    }

    /// The `Authorization` header value `auth` describes (`spec.auth`).
    pub fn authorization(&self, auth: &EndpointAuth) -> Result<Authorization, ReferenceProblem> {
        match auth {
            EndpointAuth::Basic {
                secret,
                username_key,
                password_key,
            } => {
                let field = "spec.auth.basic";
                let username = self.secret(secret, username_key, "spec.auth.basic.usernameKey")?;
                let password = self.secret(secret, password_key, "spec.auth.basic.passwordKey")?;
                let invalid = |message: String| ReferenceProblem {
                    reason: "InvalidSecret",
                    field,
                    message,
                };
                if username.contains(&b':') {
                    return Err(invalid(format!(
                        "Secret {secret:?} key {username_key:?}: a username cannot contain ':'"
                    )));
                }
                if username.is_empty() && password.is_empty() {
                    return Err(invalid(format!(
                        "Secret {secret:?}: username and password are empty"
                    )));
                }
                let mut pair = username.to_vec();
                pair.push(b':');
                pair.extend_from_slice(password);
                Authorization::new(format!("Basic {}", STANDARD.encode(&pair)))
                    .ok_or_else(|| invalid(format!("Secret {secret:?}: unusable credentials")))
            }
            EndpointAuth::Bearer { secret, token_key } => {
                let field = "spec.auth.bearer.tokenKey";
                let token = self.secret(secret, token_key, field)?;
                // A trailing newline is what `echo token > file` leaves; it is not part of it.
                let token = token.trim_ascii();
                let invalid = |why: &str| ReferenceProblem {
                    reason: "InvalidSecret",
                    field,
                    message: format!("Secret {secret:?} key {token_key:?}: {why}"),
                };
                if token.is_empty() {
                    return Err(invalid("the token is empty"));
                }
                let token = std::str::from_utf8(token)
                    .map_err(|_| invalid("the token is not valid text for an HTTP header"))?;
                Authorization::new(format!("Bearer {token}"))
                    .ok_or_else(|| invalid("the token is not valid text for an HTTP header"))
            }
        }
    }

    /// The CA bundle at `reference` (`spec.tls.caBundleRef`).
    pub fn ca_bundle(&self, reference: &ObjectKey) -> Result<CaBundle, ReferenceProblem> {
        const FIELD: &str = "spec.tls.caBundleRef";
        let value = self.value(reference, FIELD)?;
        CaBundle::parse(value).map_err(|why| ReferenceProblem {
            reason: "InvalidCaBundle",
            field: FIELD,
            message: format!(
                "{} {:?} key {:?}: {why}",
                reference.kind, reference.name, reference.key
            ),
        })
    }
}

/// A value for the `Authorization` header. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization(String);

impl Authorization {
    fn new(value: String) -> Option<Self> {
        http::HeaderValue::from_str(&value)
            .ok()
            .map(|_| Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authorization(redacted)")
    }
}

/// Trust anchors for one endpoint: the DER certificates of a PEM bundle, and a fingerprint
/// that identifies the bundle (clients are cached by it).
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    certificates: Vec<Vec<u8>>,
    fingerprint: [u8; 32],
}

impl CaBundle {
    /// Parses a PEM bundle: at least one certificate, each usable as a trust anchor.
    pub fn parse(pem: &[u8]) -> Result<Self, String> {
        let mut certificates = Vec::new();
        for (index, certificate) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let certificate =
                certificate.map_err(|e| format!("certificate {index} is not valid PEM: {e}"))?;
            webpki_anchor(&certificate)
                .map_err(|e| format!("certificate {index} is not a usable CA certificate: {e}"))?;
            certificates.push(certificate.to_vec());
        }
        if certificates.is_empty() {
            return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
        }
        let mut digest = Sha256::new();
        for certificate in &certificates {
            digest.update(certificate);
        }
        Ok(Self {
            certificates,
            fingerprint: digest.finalize().into(),
        })
    }

    /// The certificates, DER-encoded.
    pub fn certificates(&self) -> impl Iterator<Item = &[u8]> {
        self.certificates.iter().map(Vec::as_slice)
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaBundle({} certificates)", self.certificates.len())
    }
}

fn webpki_anchor(certificate: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    let mut store = rustls::RootCertStore::empty();
    store.add(certificate.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Secret's name and its keys with values.
    type TestSecret<'a> = (&'a str, &'a [(&'a str, &'a [u8])]);

    fn data(secrets: &[TestSecret<'_>]) -> NamespaceData {
        NamespaceData {
            secrets: secrets
                .iter()
                .map(|(name, keys)| {
                    let keys = keys
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_vec()))
                        .collect();
                    (name.to_string(), keys)
                })
                .collect(),
            config_maps: BTreeMap::new(),
        }
    }

    fn basic() -> EndpointAuth {
        EndpointAuth::Basic {
            secret: "auth".into(),
            username_key: "username".into(),
            password_key: "password".into(),
        }
    }

    #[test]
    fn basic_and_bearer_credentials_become_authorization_values() {
        let d = data(&[(
            "auth",
            &[
                ("username", b"app"),
                ("password", b"s3cret pass"),
                ("token", b"tok-123\n"),
            ],
        )]);
        assert_eq!(
            d.authorization(&basic()).map(|a| a.as_str().to_owned()),
            Ok(format!("Basic {}", STANDARD.encode("app:s3cret pass")))
        );
        let bearer = EndpointAuth::Bearer {
            secret: "auth".into(),
            token_key: "token".into(),
        };
        assert_eq!(
            d.authorization(&bearer).map(|a| a.as_str().to_owned()),
            Ok("Bearer tok-123".to_owned())
        );
        assert!(!format!("{:?}", d.authorization(&bearer)).contains("tok-123"));
    }

    #[test]
    fn problems_name_the_field_and_never_the_value() {
        let missing = data(&[]).authorization(&basic()).err();
        assert_eq!(missing.as_ref().map(|p| p.reason), Some("SecretNotFound"));
        assert_eq!(
            missing.map(|p| p.field),
            Some("spec.auth.basic.usernameKey")
        );

        let no_password = data(&[("auth", &[("username", b"app")])])
            .authorization(&basic())
            .err();
        assert_eq!(
            no_password.as_ref().map(|p| p.reason),
            Some("SecretKeyMissing")
        );
        assert_eq!(
            no_password.map(|p| p.to_string()),
            Some(r#"spec.auth.basic.passwordKey: Secret "auth" has no key "password""#.to_owned())
        );

        let bad = data(&[("auth", &[("token", b"line1\nline2-hunter2")])]).authorization(
            &EndpointAuth::Bearer {
                secret: "auth".into(),
                token_key: "token".into(),
            },
        );
        let bad = bad.err().map(|p| (p.reason, p.to_string()));
        assert_eq!(bad.as_ref().map(|b| b.0), Some("InvalidSecret"));
        assert!(!bad.map(|b| b.1).unwrap_or_default().contains("hunter2"));

        let colon =
            data(&[("auth", &[("username", b"a:b"), ("password", b"p")])]).authorization(&basic());
        assert_eq!(colon.err().map(|p| p.reason), Some("InvalidSecret"));
    }

    #[test]
    fn ca_bundles_parse_and_are_identified_by_their_certificates() {
        let ca = |name: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = rcgen::KeyPair::generate().expect("key");
            params.self_signed(&key).expect("certificate").pem()
        };
        let (a, b) = (ca("a"), ca("b"));
        let one = CaBundle::parse(a.as_bytes()).expect("one certificate");
        assert_eq!(one.certificates().count(), 1);
        let both = CaBundle::parse(format!("# comment\n{a}\n{b}").as_bytes()).expect("a bundle");
        assert_eq!(both.certificates().count(), 2);
        assert_ne!(one.fingerprint(), both.fingerprint());
        assert_eq!(
            CaBundle::parse(a.as_bytes()).map(|c| c.fingerprint()),
            Ok(one.fingerprint())
        );
    }

    #[test]
    fn ca_bundles_need_a_certificate() {
        assert!(CaBundle::parse(b"").is_err());
        assert!(CaBundle::parse(b"not pem at all").is_err());
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(CaBundle::parse(garbage).is_err());
        let config_map = NamespaceData::default().ca_bundle(&ObjectKey {
            kind: ObjectKind::ConfigMap,
            name: "ca".into(),
            key: "ca.crt".into(),
        });
        assert_eq!(
            config_map.err().map(|p| p.reason),
            Some("ConfigMapNotFound")
        );
    }
}
