//! One GET of the key set document: hyper-util's client over rustls with the web PKI roots
//! (the crates async-stripe already builds, so no second HTTP stack), a deadline for the
//! whole exchange and a cap on the body. Knows nothing about keys; errors are short sentences
//! for logs and `/ready` (never the document itself).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The largest key set document read (real ones are a few KiB).
pub const MAX_BYTES: usize = 1024 * 1024;

pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    uri: Uri,
    timeout: Duration,
}

impl Fetcher {
    /// `url` is checked by the settings (http or https, with a host); `timeout` bounds each
    /// fetch from connect to the last byte.
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("JWT_JWKS_URL is not a URL: {e}"))?;
        let https = crate::http::outbound::https(HttpConnector::new(), timeout);
        Ok(Fetcher {
            client: Client::builder(TokioExecutor::new()).build(https),
            uri,
            timeout,
        })
    }

    /// The document's bytes, or why there are none.
    pub async fn get(&self) -> Result<Bytes, String> {
        let request = Request::get(self.uri.clone())
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .header(
                header::USER_AGENT,
                concat!("tenantry/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| crate::error::chain(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("HTTP {}", status.as_u16()));
            }
            let body = Limited::new(response.into_body(), MAX_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        format!("document larger than {MAX_BYTES} bytes")
                    } else {
                        format!("reading the body: {e}")
                    }
                })?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no complete answer within {:?}", self.timeout))?
    }
}
