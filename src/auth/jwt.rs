//! JWT verification (SPEC §3): HS256 with `JWT_SECRET`, RS256/ES256 with `JWT_PUBLIC_KEY_PEM`
//! and the keys published at `JWT_JWKS_URL` ([`super::jwks`]); any of them may be configured
//! together. The algorithm a token may use is decided by the configured key (for a JWKS key:
//! the JWK's own `alg`, type and curve), never by the token, so `alg: none` and algorithm
//! confusion (an HS256 token signed with a public key) fail.
//!
//! Which key checks a token: HS* tokens the secret, and only the secret. Others: a token with
//! a `kid` the JWKS (a kid the set lacks, even after a refetch, falls back to the PEM key when
//! there is one); a token without a `kid` the PEM key when there is one, else the JWKS's only
//! key.

use chrono::Utc;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::jwks::{keys::Miss, Health, Jwks};
use super::{Principal, Role};
use crate::config::Settings;
use crate::error::AppError;
use crate::ids::TenantId;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    pub role: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

struct KeyedValidation {
    key: DecodingKey,
    validation: Validation,
}

pub struct JwtVerifier {
    hmac: Option<KeyedValidation>,
    public: Option<KeyedValidation>,
    jwks: Option<Arc<Jwks>>,
}

impl JwtVerifier {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        let validation = |algs: Vec<Algorithm>| {
            let mut v = Validation::new(algs[0]);
            v.algorithms = algs;
            v.leeway = 5;
            v.validate_nbf = true;
            // A configured issuer or audience must also be present, not just match when present.
            let mut required = vec!["exp"];
            required.extend(s.jwt_issuer.as_ref().map(|_| "iss"));
            required.extend(s.jwt_audience.as_ref().map(|_| "aud"));
            v.set_required_spec_claims(&required);
            match &s.jwt_issuer {
                Some(iss) => v.set_issuer(&[iss]),
                None => v.iss = None,
            }
            match &s.jwt_audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            v
        };
        let hmac = s.jwt_secret.as_ref().map(|secret| KeyedValidation {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation: validation(vec![Algorithm::HS256]),
        });
        let public = match &s.jwt_public_key_pem {
            None => None,
            Some(pem) => Some(if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                KeyedValidation {
                    key,
                    validation: validation(vec![Algorithm::RS256]),
                }
            } else if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
                KeyedValidation {
                    key,
                    validation: validation(vec![Algorithm::ES256]),
                }
            } else {
                anyhow::bail!(
                    "JWT_PUBLIC_KEY_PEM is neither an RSA nor an EC public key in PEM form"
                );
            }),
        };
        // Each JWKS key gets this validation restricted to its own algorithm.
        let jwks = Jwks::from_settings(s, &validation(vec![Algorithm::RS256]))?;
        Ok(JwtVerifier { hmac, public, jwks })
    }

    /// Starts fetching the JWKS (when configured) and keeping it fresh, in the background.
    pub fn start(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.spawn_refresher();
        }
    }

    /// The JWKS's state for `/ready`; `None` when `JWT_JWKS_URL` is not set.
    pub fn jwks_health(&self) -> Option<Health> {
        self.jwks.as_ref().map(|j| j.health())
    }

    /// Checks a token and reads its principal. Waits only when a JWKS token names a key not
    /// fetched yet (see [`Jwks::key`]).
    pub async fn verify(&self, token: &str) -> Result<Principal, AppError> {
        let unauth = |m: &str| AppError::Unauthenticated(m.to_owned());
        // Fails for `alg: none` and for any algorithm jsonwebtoken does not know.
        let header = decode_header(token).map_err(|_| unauth("malformed or unsupported token"))?;
        let not_accepted = || unauth("token algorithm not accepted");
        let claims = match (header.alg, &self.jwks, header.kid.as_deref()) {
            (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512, _, _) => {
                let keyed = self.hmac.as_ref().ok_or_else(not_accepted)?;
                check(token, &keyed.key, &keyed.validation)?
            }
            (_, Some(jwks), kid) if kid.is_some() || self.public.is_none() => {
                match (jwks.key(kid).await, &self.public) {
                    (Ok(key), _) => check(token, &key.key, &key.validation)?,
                    (Err(Miss::UnknownKid | Miss::NoKeys), Some(pem)) => {
                        check(token, &pem.key, &pem.validation)?
                    }
                    (Err(miss), _) => return Err(unauth(miss.message())),
                }
            }
            _ => {
                let keyed = self.public.as_ref().ok_or_else(not_accepted)?;
                check(token, &keyed.key, &keyed.validation)?
            }
        };
        let role = Role::parse(&claims.role).ok_or_else(|| unauth("unknown role claim"))?;
        if role != Role::PlatformAdmin && claims.tenant_id.is_none() {
            return Err(unauth("tenant roles need a tenant_id claim"));
        }
        Ok(Principal {
            user_id: claims.sub,
            role,
            tenant_id: claims.tenant_id,
            expires_at: claims.exp,
        })
    }
}

/// The token's claims when `key` verifies it under `validation`; UNAUTHENTICATED saying why
/// not, in words that reveal nothing about the keys.
fn check(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Claims, AppError> {
    let unauth = |m: &str| AppError::Unauthenticated(m.to_owned());
    decode::<Claims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => unauth("token expired"),
                ImmatureSignature => unauth("token not yet valid"),
                InvalidIssuer => unauth("token issuer not accepted"),
                InvalidAudience => unauth("token audience not accepted"),
                InvalidAlgorithm => unauth("token algorithm not accepted"),
                _ => unauth("invalid token"),
            }
        })
}

/// Signs a development/test token with `JWT_SECRET` (HS256): `tenantry token`.
pub fn issue(
    s: &Settings,
    role: Role,
    tenant_id: Option<TenantId>,
    sub: &str,
    ttl: std::time::Duration,
) -> anyhow::Result<String> {
    let secret = s
        .jwt_secret
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("JWT_SECRET is not set; `tenantry token` signs with it"))?;
    let now = Utc::now().timestamp();
    let claims = Claims {
        sub: sub.to_owned(),
        tenant_id,
        role: role.as_str().to_owned(),
        exp: now + ttl.as_secs() as i64,
        iat: Some(now),
        nbf: None,
        iss: s.jwt_issuer.clone(),
        aud: s.jwt_audience.clone(),
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}
