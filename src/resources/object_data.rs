//! The data of Secrets and ConfigMaps in the form compilation and delivery read it
//! ([`ObjectData`]), whether the objects come from the API server or from manifest files.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Secret},
};

use crate::model::credentials::ObjectData;

/// A Secret's `data`, with `stringData` over it as the API server merges them (only manifests
/// carry `stringData`: the API server never returns it).
pub fn secret_data(secret: &Secret) -> ObjectData {
    merged(secret.data.as_ref(), secret.string_data.as_ref())
}

/// A ConfigMap's `binaryData` and `data` in one map.
pub fn config_map_data(config_map: &ConfigMap) -> ObjectData {
    merged(config_map.binary_data.as_ref(), config_map.data.as_ref())
}

/// `binary`, with `text` over it.
fn merged(
    binary: Option<&BTreeMap<String, ByteString>>,
    text: Option<&BTreeMap<String, String>>,
) -> ObjectData {
    let binary = binary
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.0.clone()));
    let text = text
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.clone().into_bytes()));
    binary.chain(text).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_wins_over_data() {
        let secret = Secret {
            data: Some(BTreeMap::from([
                ("a".into(), ByteString(b"from data".to_vec())),
                ("b".into(), ByteString(vec![0, 255])),
            ])),
            string_data: Some(BTreeMap::from([("a".into(), "from stringData".into())])),
            ..Default::default()
        };
        assert_eq!(
            secret_data(&secret),
            ObjectData::from([
                ("a".into(), b"from stringData".to_vec()),
                ("b".into(), vec![0, 255]),
            ])
        );
        assert_eq!(secret_data(&Secret::default()), ObjectData::new());
    }

    #[test]
    fn config_maps_merge_binary_and_text_data() {
        let config_map = ConfigMap {
            binary_data: Some(BTreeMap::from([(
                "bundle.der".into(),
                ByteString(vec![0x30, 0x82]),
            )])),
            data: Some(BTreeMap::from([("ca.crt".into(), "-----BEGIN".into())])),
            ..Default::default()
        };
        assert_eq!(
            config_map_data(&config_map),
            ObjectData::from([
                ("bundle.der".into(), vec![0x30, 0x82]),
                ("ca.crt".into(), b"-----BEGIN".to_vec()),
            ])
        );
    }
}
