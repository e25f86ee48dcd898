//! ApiVersions (key 18): the versions table, derived from `strom_protocol::apis`.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use strom_protocol::apis;

pub(super) fn handle(_request: &ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = apis::api_version_entries();
    response
}
