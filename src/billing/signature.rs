//! The `Stripe-Signature` check (SPEC §4): HMAC-SHA256 over `{t}.{body}` with any of the
//! configured signing secrets (rotation keeps the old one for a while), within Stripe's
//! timestamp tolerance.

/// Stripe's default tolerance for the signature timestamp.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, PartialEq, Eq)]
pub enum SignatureError {
    NoSecret,
    Malformed,
    Stale,
    Mismatch,
}

impl SignatureError {
    pub fn message(&self) -> &'static str {
        match self {
            SignatureError::NoSecret => "webhook signing secret is not configured",
            SignatureError::Malformed => "malformed Stripe-Signature header",
            SignatureError::Stale => "signature timestamp outside the tolerance",
            SignatureError::Mismatch => "no signature matches the payload",
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `v1` signature Stripe computes: HMAC-SHA256 over `{t}.{body}`, hex encoded.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    hex(ctx.sign().as_ref())
}

/// Checks `Stripe-Signature: t=...,v1=...,v1=...` against every configured secret: any `v1`
/// matching any secret passes, if `t` is within the tolerance of `now`.
pub fn verify(
    secrets: &[String],
    header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v.to_owned()),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // `t` comes from the request: `now - t` overflows for t near i64::MIN/MAX (a panic in
    // debug builds, a wrapped "fresh" timestamp in release). No answer = outside tolerance.
    let age = now.checked_sub(t).and_then(i64::checked_abs);
    if age.is_none_or(|age| age > TOLERANCE_SECS) {
        return Err(SignatureError::Stale);
    }
    let expected: Vec<String> = secrets.iter().map(|s| sign(s, t, body)).collect();
    let ok = v1.iter().any(|got| {
        expected
            .iter()
            .any(|e| constant_time_eq::constant_time_eq(e.as_bytes(), got.as_bytes()))
    });
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_v1_with_any_secret_within_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = vec!["whsec_old".to_owned(), "whsec_new".to_owned()];
        let good = sign("whsec_new", 1000, body);
        let header = format!("t=1000,v1=deadbeef,v1={good},v0=ignored");
        assert_eq!(
            verify(&secrets, &header, body, 1000 + TOLERANCE_SECS),
            Ok(())
        );
        assert_eq!(
            verify(&secrets, &header, body, 1000 + TOLERANCE_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&secrets, &header, b"{}", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&["whsec_other".into()], &header, body, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secrets, "v1=abc", body, 1000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&[], &header, body, 1000),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = vec!["whsec_a".to_owned()];
        for t in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MIN / 2] {
            // Even with a signature that matches the secret for that `t`.
            let header = format!("t={t},v1={}", sign("whsec_a", t, body));
            for now in [0, 1_700_000_000, i64::MAX, i64::MIN] {
                if now.abs_diff(t) <= TOLERANCE_SECS as u64 {
                    continue; // genuinely fresh
                }
                assert_eq!(
                    verify(&secrets, &header, body, now),
                    Err(SignatureError::Stale),
                    "t={t} now={now}"
                );
            }
        }
        // Out of i64 range does not parse: malformed.
        assert_eq!(
            verify(&secrets, "t=-9223372036854775809,v1=00", body, 0),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("secret", "1.{}"), computed independently with Python's hmac module.
        assert_eq!(
            sign("secret", 1, b"{}"),
            "1122767b193110cfec322b6f199b599edbf608ed087f2d27afb0b97d99523908"
        );
    }
}
