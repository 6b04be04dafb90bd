//! JWT verification (SPEC §3): HS256 with `JWT_SECRET`, RS256/ES256 with `JWT_PUBLIC_KEY_PEM`.
//! The algorithm a token may use is decided by the configured key, never by the token, so
//! `alg: none` and algorithm confusion (an HS256 token signed with the public key) fail.

use chrono::Utc;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

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
        if s.jwt_jwks_url.is_some() {
            tracing::warn!("JWT_JWKS_URL is not supported yet; use JWT_PUBLIC_KEY_PEM");
        }
        Ok(JwtVerifier { hmac, public })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AppError> {
        let unauth = |m: &str| AppError::Unauthenticated(m.to_owned());
        // Fails for `alg: none` and for any algorithm jsonwebtoken does not know.
        let header = decode_header(token).map_err(|_| unauth("malformed or unsupported token"))?;
        let keyed = match header.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => self.hmac.as_ref(),
            _ => self.public.as_ref(),
        }
        .ok_or_else(|| unauth("token algorithm not accepted"))?;
        let data = decode::<Claims>(token, &keyed.key, &keyed.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => unauth("token expired"),
                ImmatureSignature => unauth("token not yet valid"),
                InvalidIssuer => unauth("token issuer not accepted"),
                InvalidAudience => unauth("token audience not accepted"),
                InvalidAlgorithm => unauth("token algorithm not accepted"),
                _ => unauth("invalid token"),
            }
        })?;
        let claims = data.claims;
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
