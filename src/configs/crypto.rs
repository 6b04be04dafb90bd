//! Encryption of configuration values at rest: AES-256-GCM with `CONFIG_ENCRYPTION_KEY`, a
//! random 96-bit nonce per value (stored in front of the ciphertext), and the value's identity
//! (tenant, category, key) as associated data, so a ciphertext copied onto another row does
//! not decrypt.

use crate::ids::TenantId;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

const NONCE_LEN: usize = 12;

fn aad(tenant_id: TenantId, category: &str, key: &str) -> Vec<u8> {
    format!("{tenant_id}/{category}/{key}").into_bytes()
}

pub fn encrypt(
    secret: &[u8; 32],
    tenant_id: TenantId,
    category: &str,
    key: &str,
    plain: &[u8],
) -> Vec<u8> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(secret));
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = aad(tenant_id, category, key);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = nonce.to_vec();
    out.extend(sealed);
    out
}

/// `None` when the key is wrong or the stored bytes were tampered with.
pub fn decrypt(
    secret: &[u8; 32],
    tenant_id: TenantId,
    category: &str,
    key: &str,
    stored: &[u8],
) -> Option<Vec<u8>> {
    if stored.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = stored.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(secret));
    let aad = aad(tenant_id, category, key);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fresh_nonces_bound_to_the_row() {
        let k = [7u8; 32];
        let t = TenantId::now_v7();
        let a = encrypt(&k, t, "integrations", "api_key", b"sk_live_secret");
        let b = encrypt(&k, t, "integrations", "api_key", b"sk_live_secret");
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(!a.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            decrypt(&k, t, "integrations", "api_key", &a).unwrap(),
            b"sk_live_secret"
        );
        assert!(
            decrypt(&k, t, "integrations", "other", &a).is_none(),
            "bound to its key"
        );
        assert!(
            decrypt(&k, TenantId::now_v7(), "integrations", "api_key", &a).is_none(),
            "bound to its tenant"
        );
        assert!(decrypt(&[8u8; 32], t, "integrations", "api_key", &a).is_none());
    }
}
