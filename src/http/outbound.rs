//! The one way Tenantry makes outbound HTTP requests of its own (JWKS fetches, webhooks):
//! hyper-util's connector over rustls with the web PKI roots, the stack async-stripe already
//! builds (no second HTTP client crate).

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

/// `http` (with its resolver) for `http` and `https` URLs, HTTP/1.1, connecting within
/// `timeout`.
pub fn https<R>(mut http: HttpConnector<R>, timeout: Duration) -> HttpsConnector<HttpConnector<R>> {
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}
