//! One POST of an event to an endpoint: hyper-util's client over rustls (the stack
//! async-stripe already builds), DNS through [`GuardedResolver`], a deadline for the whole
//! exchange, and the answer's body ignored (only its status counts).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, Request, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::target::{self, GuardedResolver, Policy};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The endpoint answered 2xx.
    Delivered(u16),
    /// It answered something else.
    Refused(u16),
    /// No answer: refused target, connection error or timeout (a short sentence).
    Failed(String),
}

pub struct Sender {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    policy: Policy,
    timeout: Duration,
}

/// The headers of a delivery besides the content type.
pub struct Signed<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub signature: String,
}

impl Sender {
    pub fn new(policy: Policy, timeout: Duration) -> Self {
        let resolver = GuardedResolver {
            allow_private: policy.allow_private,
        };
        let https =
            crate::http::outbound::https(HttpConnector::new_with_resolver(resolver), timeout);
        Sender {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(4)
                .build(https),
            policy,
            timeout,
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// POSTs `body` to `url`. The URL is checked again (settings may have changed since the
    /// endpoint was saved, and an IP literal never reaches the resolver).
    pub async fn post(&self, url: &str, body: Bytes, signed: Signed<'_>) -> Attempt {
        let uri: Uri = match target::check_url(url, self.policy) {
            Ok(uri) => uri,
            Err(why) => return Attempt::Failed(why),
        };
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("Tenantry-Webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("Tenantry-Signature", signed.signature)
            .header("Tenantry-Event-Id", signed.event_id)
            .header("Tenantry-Event-Type", signed.event_type)
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(format!("cannot build the request: {e}")),
        };
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Attempt::Failed(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => Attempt::Failed(crate::error::chain(&e).chars().take(300).collect()),
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                // The body is not read: dropping it closes or recycles the connection.
                match response.status().is_success() {
                    true => Attempt::Delivered(status),
                    false => Attempt::Refused(status),
                }
            }
        }
    }
}
