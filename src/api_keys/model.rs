//! API key rows, the roles a key may hold, the secret and the key's name.

use base64::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::schema::api_keys;
use crate::db::text_enum::text_enum;
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;

/// What every secret starts with: a bearer token with it is an API key, never a JWT.
pub const SECRET_PREFIX: &str = "tnt_";
/// Random bytes in a secret (256 bits: a fast hash is safe, no salt or stretching needed).
const SECRET_BYTES: usize = 32;
/// Characters of the encoded secret shown as the key's `prefix` after `tnt_`.
const DISPLAY_CHARS: usize = 8;
/// Longest key name, in characters (the column's CHECK).
pub const MAX_NAME: usize = 100;
/// Keys a tenant may hold that are neither revoked nor expired.
pub const MAX_LIVE_KEYS: i64 = 100;

text_enum!(
    /// The role a key acts with: never a platform role.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum KeyRole {
        TenantAdmin = "tenant_admin",
        TenantMember = "tenant_member",
    }
);

impl KeyRole {
    pub fn role(self) -> Role {
        match self {
            KeyRole::TenantAdmin => Role::TenantAdmin,
            KeyRole::TenantMember => Role::TenantMember,
        }
    }

    /// The key role for `role`; `None` for `PLATFORM_ADMIN`.
    pub fn from_role(role: Role) -> Option<KeyRole> {
        match role {
            Role::TenantAdmin => Some(KeyRole::TenantAdmin),
            Role::TenantMember => Some(KeyRole::TenantMember),
            Role::PlatformAdmin => None,
        }
    }
}

/// An API key as stored, without its hash (which no query outside authentication reads).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKeyRow {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub role: KeyRole,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<Uuid>,
}

impl ApiKeyRow {
    /// Neither revoked nor past its expiry at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }

    /// The audit view of a key: never the secret or its hash.
    pub fn audit_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "prefix": self.prefix,
            "role": self.role,
            "expiresAt": self.expires_at,
            "revokedAt": self.revoked_at,
            "rotatedFrom": self.rotated_from,
        })
    }
}

#[derive(Insertable, Debug)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub role: KeyRole,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<Uuid>,
}

/// A key's secret (`tnt_` + 43 URL-safe base64 characters of 32 random bytes). Shown once, in
/// the answer that creates it; `Debug` never prints it.
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A new secret from the operating system's CSPRNG.
    pub fn generate() -> AppResult<Secret> {
        Ok(Secret(random_token(SECRET_PREFIX)?))
    }

    /// The secret itself, for the one answer that shows it.
    pub fn expose(self) -> String {
        self.0
    }

    pub fn hash(&self) -> Vec<u8> {
        hash(&self.0)
    }

    /// What the API shows to tell keys apart: `tnt_` and the next 8 characters.
    pub fn display_prefix(&self) -> String {
        self.0
            .chars()
            .take(SECRET_PREFIX.len() + DISPLAY_CHARS)
            .collect()
    }
}

/// `prefix` and 256 bits from the operating system's CSPRNG, base64url: every secret Tenantry
/// shows once (API keys, webhook signing secrets).
pub fn random_token(prefix: &str) -> AppResult<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; SECRET_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AppError::internal(anyhow::anyhow!("the system CSPRNG failed")))?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Ok(format!("{prefix}{encoded}"))
}

/// SHA-256 of a presented secret: what is stored and looked up.
pub fn hash(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Whether a bearer token is an API key (by its prefix): such a token is never tried as a JWT.
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(SECRET_PREFIX)
}

/// A key's name: trimmed, 1 to 100 characters, no control characters.
pub fn parse_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(AppError::bad_input(
            "name",
            format!("name must be 1 to {MAX_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "name",
            "name may not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hash_to_32_bytes() {
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 32);
        assert!(a.display_prefix().starts_with("tnt_") && a.display_prefix().len() == 12);
        assert_eq!(format!("{a:?}"), "Secret(<redacted>)");
        let s = a.expose();
        assert!(is_api_key(&s) && s.len() == 4 + 43, "{s}");
        assert!(s[4..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(!is_api_key("eyJhbGciOi"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  ci deploy ").unwrap(), "ci deploy");
        assert!(parse_name("  ").is_err());
        assert!(parse_name(&"x".repeat(101)).is_err());
        assert!(parse_name("a\u{0}b").is_err());
        assert_eq!(KeyRole::from_role(Role::PlatformAdmin), None);
    }
}
