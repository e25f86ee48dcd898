//! ApiVersions (key 18): the versions table, derived from `strom_protocol::apis`, and from v3
//! the feature levels (KIP-584): `transaction.version`, which tells clients that know
//! transactions v2 (KIP-890 part 2) whether to use it.

use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use strom_protocol::apis;

use super::str_bytes;
use crate::broker::Broker;
use crate::config::TRANSACTION_VERSION_MAX;

const TRANSACTION_VERSION: &str = "transaction.version";

pub(super) fn handle(broker: &Broker, _request: &ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = apis::api_version_entries();
    if version >= 3 {
        // A supported range starting at 0 is listed only from v4 (KIP-1022): older clients
        // refuse a minimum of 0 (KAFKA-17011), so Kafka leaves such features out for them.
        if version >= 4 {
            let mut supported = SupportedFeatureKey::default();
            supported.name = str_bytes(TRANSACTION_VERSION);
            supported.min_version = 0;
            supported.max_version = TRANSACTION_VERSION_MAX;
            response.supported_features = vec![supported];
        }
        response.finalized_features_epoch = broker.started_ms;
        // As Kafka does, a feature at level 0 is not listed as finalized.
        let level = broker.config.transaction_version;
        if level > 0 {
            let mut finalized = FinalizedFeatureKey::default();
            finalized.name = str_bytes(TRANSACTION_VERSION);
            finalized.min_version_level = level;
            finalized.max_version_level = level;
            response.finalized_features = vec![finalized];
        }
    }
    response
}
