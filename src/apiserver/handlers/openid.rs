//! OIDC discovery for service-account tokens (upstream's `ServiceAccountIssuerDiscovery`):
//! `/.well-known/openid-configuration` and `/openid/v1/jwks`, so anyone holding a token
//! can verify it offline against the published key.
//!
//! Invariant: the JWKS always lists exactly the key the server signs with.

use crate::apiserver::authn::service_account::ISSUER;
use crate::apiserver::response::{self, Body};
use crate::apiserver::ApiState;
use http::Response;
use serde_json::json;

/// The discovery document; `jwks_uri` points at this server's advertised address.
pub fn configuration(state: &ApiState) -> Response<Body> {
    let doc = json!({
        "issuer": ISSUER,
        "jwks_uri": format!("https://{}/openid/v1/jwks", state.advertise),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    });
    cacheable(response::json_typed(200, "application/json", &doc))
}

/// The signing key as a JWK set.
pub fn jwks(state: &ApiState) -> Response<Body> {
    let keys = json!({"keys": [state.authn.service_account_key().jwk()]});
    cacheable(response::json_typed(200, "application/jwk-set+json", &keys))
}

fn cacheable(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}
