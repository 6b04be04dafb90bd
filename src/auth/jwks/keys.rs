//! JWK → verification key: which keys of a published set are accepted, and with which
//! algorithm. The algorithm comes from the key — its `alg`, or else its type and curve (RSA →
//! RS256, EC P-256 → ES256, P-384 → ES384) — never from a token's header, so a token cannot
//! pick how it is checked. Encryption keys (`use: enc`, `key_ops` without `verify`),
//! symmetric keys (`oct`: a published HMAC secret would let anyone sign) and unsupported
//! types or curves are skipped and named, so the caller can log them. Pure: no I/O.

use std::sync::Arc;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// One accepted key: its id, the one algorithm a token checked with it must use, and the
/// validation (claims rules of the verifier, this algorithm only).
pub struct VerifyKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    pub validation: Validation,
}

/// The accepted keys of one fetched set (never empty once stored: a set without a usable key
/// is a failed fetch).
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Arc<VerifyKey>>,
}

/// Why a token found no key in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No key has been fetched yet (the provider could not be reached).
    NoKeys,
    /// The token's `kid` names no key of the set (or the set has one key under another id).
    UnknownKid,
    /// The token has no `kid` and the set holds several keys.
    KidRequired,
}

impl Miss {
    pub fn message(self) -> &'static str {
        match self {
            Miss::NoKeys => {
                "signing keys from JWT_JWKS_URL are not available yet (cannot fetch them); \
                 try again later"
            }
            Miss::UnknownKid => "token signed by a key that JWT_JWKS_URL does not publish (kid)",
            Miss::KidRequired => "token has no kid header; the key set holds several keys",
        }
    }
}

impl KeySet {
    /// The key for a token's `kid`; without a kid, the only key of a one-key set.
    pub fn find(&self, kid: Option<&str>) -> Result<&Arc<VerifyKey>, Miss> {
        match (kid, self.keys.as_slice()) {
            (_, []) => Err(Miss::NoKeys),
            (Some(kid), keys) => keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(Miss::UnknownKid),
            (None, [only]) => Ok(only),
            (None, _) => Err(Miss::KidRequired),
        }
    }

    /// The key ids, for logs (`-` for a key without one).
    pub fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("-"))
            .collect()
    }
}

/// A parsed set: the accepted keys, and one line per skipped key saying why.
pub struct Parsed {
    pub set: KeySet,
    pub skipped: Vec<String>,
}

/// Reads a JWK set document (`{"keys": [...]}`). Each key is read on its own, so one key of a
/// type this version cannot read does not hide the others. `validation` carries the
/// verifier's claim rules; each key gets a copy restricted to its own algorithm.
pub fn parse_set(body: &[u8], validation: &Validation) -> Result<Parsed, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWK set document: {e}"))?;
    let mut set = KeySet::default();
    let mut skipped = Vec::new();
    for (i, raw) in doc.keys.into_iter().enumerate() {
        let kid = raw.get("kid").and_then(|v| v.as_str()).map(str::to_owned);
        let name = kid
            .as_deref()
            .map_or_else(|| format!("#{i}"), |k| format!("{k:?}"));
        let accepted = serde_json::from_value::<Jwk>(raw)
            .map_err(|_| "unsupported key type, algorithm or parameters")
            .and_then(|jwk| key_from_jwk(&jwk));
        match accepted {
            Ok(_) if kid.is_some() && set.keys.iter().any(|k| k.kid == kid) => {
                skipped.push(format!("key {name}: duplicate kid"));
            }
            Ok((algorithm, key)) => {
                let mut validation = validation.clone();
                validation.algorithms = vec![algorithm];
                set.keys.push(Arc::new(VerifyKey {
                    kid,
                    algorithm,
                    key,
                    validation,
                }));
            }
            Err(why) => skipped.push(format!("key {name}: {why}")),
        }
    }
    Ok(Parsed { set, skipped })
}

/// The algorithm and decoding key of one JWK, or why it is not accepted.
pub fn key_from_jwk(jwk: &Jwk) -> Result<(Algorithm, DecodingKey), &'static str> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err("not a signing key (use)");
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err("not a signing key (key_ops)");
    }
    let declared = jwk.common.key_algorithm;
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => match declared {
            None | Some(KeyAlgorithm::RS256) => Algorithm::RS256,
            Some(KeyAlgorithm::RS384) => Algorithm::RS384,
            Some(KeyAlgorithm::RS512) => Algorithm::RS512,
            Some(KeyAlgorithm::PS256) => Algorithm::PS256,
            Some(KeyAlgorithm::PS384) => Algorithm::PS384,
            Some(KeyAlgorithm::PS512) => Algorithm::PS512,
            Some(_) => return Err("alg is not a signature algorithm of an RSA key"),
        },
        AlgorithmParameters::EllipticCurve(ec) => match (&ec.curve, declared) {
            (EllipticCurve::P256, None | Some(KeyAlgorithm::ES256)) => Algorithm::ES256,
            (EllipticCurve::P384, None | Some(KeyAlgorithm::ES384)) => Algorithm::ES384,
            (EllipticCurve::P256 | EllipticCurve::P384, Some(_)) => {
                return Err("alg does not fit the key's curve")
            }
            _ => return Err("unsupported curve (P-256 and P-384 are)"),
        },
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) keys are never accepted from a key set")
        }
        AlgorithmParameters::OctetKeyPair(_) => return Err("unsupported key type (OKP)"),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "unreadable key parameters")?;
    Ok((algorithm, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RSA: &str = include_str!("../../../tests/fixtures/jwk_rsa.json");

    fn rsa(extra: serde_json::Value) -> serde_json::Value {
        let mut key: serde_json::Value = serde_json::from_str(RSA).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            key[k] = v.clone();
        }
        key
    }

    fn ec(crv: &str, extra: serde_json::Value) -> serde_json::Value {
        // The P-256 generator point: a valid public point, enough for the mapping.
        let mut key = json!({
            "kty": "EC", "crv": crv,
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
        });
        for (k, v) in extra.as_object().unwrap() {
            key[k] = v.clone();
        }
        key
    }

    fn mapped(key: serde_json::Value) -> Result<Algorithm, &'static str> {
        let jwk: Jwk = serde_json::from_value(key).map_err(|_| "unreadable")?;
        key_from_jwk(&jwk).map(|(alg, _)| alg)
    }

    #[test]
    fn the_algorithm_comes_from_the_key() {
        assert_eq!(mapped(rsa(json!({}))), Ok(Algorithm::RS256));
        assert_eq!(
            mapped(rsa(json!({"alg": "RS256", "use": "sig"}))),
            Ok(Algorithm::RS256)
        );
        assert_eq!(mapped(rsa(json!({"alg": "PS256"}))), Ok(Algorithm::PS256));
        assert_eq!(mapped(ec("P-256", json!({}))), Ok(Algorithm::ES256));
        assert_eq!(
            mapped(ec("P-256", json!({"alg": "ES256"}))),
            Ok(Algorithm::ES256)
        );
        assert_eq!(mapped(ec("P-384", json!({}))), Ok(Algorithm::ES384));
    }

    #[test]
    fn keys_that_cannot_sign_or_do_not_fit_are_refused() {
        assert!(mapped(rsa(json!({"use": "enc"}))).is_err());
        assert!(mapped(rsa(json!({"key_ops": ["encrypt"]}))).is_err());
        assert!(mapped(rsa(json!({"alg": "RSA-OAEP"}))).is_err());
        assert!(mapped(rsa(json!({"alg": "HS256"}))).is_err());
        assert!(mapped(rsa(json!({"alg": "ES256"}))).is_err());
        assert!(mapped(ec("P-256", json!({"alg": "ES384"}))).is_err());
        assert!(mapped(ec("P-256", json!({"alg": "RS256"}))).is_err());
        assert!(mapped(ec("P-521", json!({}))).is_err());
        assert!(mapped(json!({"kty": "oct", "k": "c2VjcmV0"})).is_err());
        assert!(mapped(json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})).is_err());
    }

    #[test]
    fn a_set_keeps_what_it_can_use_and_names_the_rest() {
        let body = json!({ "keys": [
            rsa(json!({"kid": "a", "use": "sig"})),
            rsa(json!({"kid": "enc", "use": "enc"})),
            {"kid": "weird", "kty": "XYZ"},
            ec("P-256", json!({"kid": "e"})),
            rsa(json!({"kid": "a"})),
        ]});
        let parsed = parse_set(body.to_string().as_bytes(), &Validation::default()).unwrap();
        assert_eq!(parsed.set.kids(), ["a", "e"]);
        assert_eq!(parsed.skipped.len(), 3, "{:?}", parsed.skipped);
        assert!(parsed
            .skipped
            .iter()
            .any(|s| s.contains("\"a\": duplicate")));
        let e = parsed.set.find(Some("e")).unwrap();
        assert_eq!(e.validation.algorithms, [Algorithm::ES256]);
        assert_eq!(parsed.set.find(Some("zz")).err(), Some(Miss::UnknownKid));
        assert_eq!(parsed.set.find(None).err(), Some(Miss::KidRequired));
        assert!(parse_set(b"{\"nokeys\": 1}", &Validation::default()).is_err());
    }

    #[test]
    fn a_one_key_set_needs_no_kid_and_an_empty_one_has_nothing() {
        let body = json!({ "keys": [rsa(json!({}))] });
        let parsed = parse_set(body.to_string().as_bytes(), &Validation::default()).unwrap();
        assert!(parsed.set.find(None).is_ok());
        assert_eq!(parsed.set.find(Some("x")).err(), Some(Miss::UnknownKid));
        assert_eq!(KeySet::default().find(Some("x")).err(), Some(Miss::NoKeys));
    }
}
