//! Client-sent `X-Request-ID` values are accepted only when they look like an id: 1..=64
//! characters of `[A-Za-z0-9._:-]`. Anything else (10 KB of text, control characters, several
//! headers) is removed before `SetRequestIdLayer`, which then generates a UUID, so the value
//! that reaches logs, audit metadata and error extensions is always short and inert.

use axum::extract::Request;
use axum::http::header::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const MAX_LEN: usize = 64;

/// Whether a client's request id may be kept.
pub fn acceptable(value: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `axum::middleware::map_request` step, outside `SetRequestIdLayer`: drops an unacceptable
/// client id (counted) so a fresh UUID replaces it.
pub async fn sanitize(mut req: Request) -> Request {
    let mut values = req.headers().get_all(&X_REQUEST_ID).iter();
    let keep = match (values.next(), values.next()) {
        (None, _) => return req,
        (Some(v), None) => acceptable(v.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        metrics::counter!("tenantry_request_id_replaced_total").increment(1);
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        for ok in [
            "a",
            "req-1",
            "0b6f3c1e-8a1d-4c59-9a4c-1f0e2d3c4b5a",
            "svc:api.v2_x",
            &"x".repeat(64),
        ] {
            assert!(acceptable(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "a b",
            "a\nb",
            "a\u{0}b",
            "é",
            "a/b",
            "<script>",
            "a\tb",
        ] {
            assert!(!acceptable(bad.as_bytes()), "{bad:?}");
        }
    }
}
