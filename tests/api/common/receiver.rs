//! A local HTTP receiver of Tenantry's webhooks: it records every request (headers and body)
//! and answers from a script (a status, or no answer at all), then 200.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Never answers (the request stays open until the sender gives up or dies).
    Hang,
}

#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the receiver answered (0 when it hung).
    pub answered: u16,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Whether `Tenantry-Signature` holds a `v1` that is HMAC-SHA256 with `secret` over
    /// `"<t>." + body`, hex (the documented algorithm, computed here from scratch).
    pub fn signed_with(&self, secret: &str) -> bool {
        let header = self.header("tenantry-signature");
        let mut t = None;
        let mut v1 = Vec::new();
        for part in header.split(',') {
            match part.split_once('=') {
                Some(("t", v)) => t = Some(v.to_string()),
                Some(("v1", v)) => v1.push(v.to_string()),
                _ => {}
            }
        }
        let Some(t) = t else { return false };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let mut signed = t.into_bytes();
        signed.push(b'.');
        signed.extend_from_slice(&self.body);
        let mac = ring::hmac::sign(&key, &signed);
        let hex: String = mac.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        v1.contains(&hex)
    }
}

#[derive(Clone, Default)]
struct Shared {
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

pub struct Receiver {
    pub url: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn hook(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let reply = s
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(200));
    let answered = match reply {
        Reply::Status(code) => code,
        Reply::Hang => 0,
    };
    s.hits.lock().unwrap().push(Hit {
        headers,
        body,
        answered,
    });
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
    }
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Receiver {
        let shared = Shared::default();
        shared.script.lock().unwrap().extend(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/hook", post(hook))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            shared,
            server,
        }
    }

    /// Replaces what is left of the script.
    pub fn answer(&self, replies: &[Reply]) {
        let mut script = self.shared.script.lock().unwrap();
        script.clear();
        script.extend(replies.iter().copied());
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    /// The hits once there are at least `n` (fails after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        let until = Instant::now() + within;
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < until,
                "expected {n} webhook requests within {within:?}, got {}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
