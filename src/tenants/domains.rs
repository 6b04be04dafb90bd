//! Custom domains: a tenant admin's domain is a claim until the tenant proves control of it.
//!
//! Setting a domain (`updateTenant`) by a tenant admin stores a pending claim with a random
//! token and an expiry (72 h); the tenant publishes the token as the DNS TXT record
//! `_tenantry-challenge.<domain>` and calls `verifyTenantDomain`, which looks the record up and
//! only then makes the claim the tenant's `domain` — the only domain Host resolution and
//! `/internal/tenants/validate` use. Claims do not reserve the name: several tenants may claim
//! one, the first to prove it gets it (the unique index on verified domains decides), and an
//! expired claim is simply ignored. Platform admins are the operator: a domain they set is
//! verified at once.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use rand::RngCore;
use serde_json::json;

use scoped_futures::ScopedFutureExt;

use super::model::{DomainClaim, TenantDomain, TenantRow};
use super::service::{change_with_claim, ensure_writable, get, not_deleted, target_scope};
use super::store::{self, TenantChanges};
use crate::app::App;
use crate::auth::{Actor, Role};
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;

/// The label in front of the domain where the token must be published.
pub const CHALLENGE_LABEL: &str = "_tenantry-challenge";
/// How long a claim waits for its proof.
pub const CLAIM_TTL_HOURS: i64 = 72;

pub fn txt_record_name(domain: &str) -> String {
    format!("{CHALLENGE_LABEL}.{domain}")
}

/// What a domain in `updateTenant` does to the tenant row.
pub enum DomainChange {
    /// Verified at once (platform admin, or the tenant's own verified domain again).
    Verified(String),
    /// A new claim waiting for its DNS proof.
    Claim {
        domain: String,
        token: String,
        expires_at: DateTime<Utc>,
    },
    /// Clears the domain and any claim.
    Clear,
}

/// The write to the tenant's claim that goes with a tenant change.
pub enum ClaimWrite {
    Put(DomainClaim),
    Delete,
    /// Deletes exactly this live claim, or refuses the change (`CONFLICT`).
    Consume(DomainClaim),
}

impl DomainChange {
    /// Sets the verified domain in `changes`, and says what happens to the claim.
    pub fn apply(self, tenant_id: TenantId, changes: &mut TenantChanges) -> ClaimWrite {
        match self {
            DomainChange::Verified(d) => {
                changes.domain = Some(Some(d));
                ClaimWrite::Delete
            }
            DomainChange::Clear => {
                changes.domain = Some(None);
                ClaimWrite::Delete
            }
            DomainChange::Claim {
                domain,
                token,
                expires_at,
            } => ClaimWrite::Put(DomainClaim {
                tenant_id,
                domain,
                token,
                expires_at,
            }),
        }
    }
}

/// The tenant's live claim (tenant admins of that tenant and platform admins).
pub async fn pending(
    db: &Db,
    actor: &Actor,
    tenant_id: TenantId,
) -> AppResult<Option<DomainClaim>> {
    actor.require(Role::TenantAdmin)?;
    let scope = target_scope(actor, tenant_id, "tenant_read")?;
    db.scoped(scope, |c| {
        async move { Ok(store::live_claim(c, tenant_id, Utc::now()).await?) }.scope_boxed()
    })
    .await
}

/// Decides what setting `domain` (already validated; `None` = clear) means for `actor`.
/// A tenant admin may not claim a domain another tenant has verified (`CONFLICT`).
pub async fn decide(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    domain: Option<TenantDomain>,
) -> AppResult<DomainChange> {
    let Some(domain) = domain.map(TenantDomain::into_inner) else {
        return Ok(DomainChange::Clear);
    };
    if actor.is_platform() {
        return Ok(DomainChange::Verified(domain));
    }
    match app.tenant_cache.by_domain(&app.db, &domain).await? {
        Some(owner) if owner.id == tenant_id => return Ok(DomainChange::Verified(domain)),
        Some(_) => {
            return Err(AppError::conflict(
                Some("domain"),
                "another tenant already uses this domain",
            ))
        }
        None => {}
    }
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    Ok(DomainChange::Claim {
        domain,
        token: format!(
            "tenantry-verification={}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ),
        expires_at: Utc::now() + chrono::Duration::hours(CLAIM_TTL_HOURS),
    })
}

/// Checks the DNS proof of the tenant's pending claim and, if it holds, makes the claimed
/// domain the tenant's verified domain. Tenant admins of that tenant, or platform admins.
pub async fn verify(app: &App, actor: &Actor, tenant_id: TenantId) -> AppResult<TenantRow> {
    actor.require(Role::TenantAdmin)?;
    let tenant = get(&app.db, actor, tenant_id).await?;
    ensure_writable(actor, &tenant)?;
    let claim = pending(&app.db, actor, tenant_id).await?.ok_or_else(|| {
        AppError::bad_input(
            "domain",
            "the tenant has no pending domain claim (or it expired): set the domain again",
        )
    })?;
    let name = txt_record_name(&claim.domain);
    let published = app.domains.txt(&name).await?;
    if !published.iter().any(|v| v.trim() == claim.token) {
        return Err(AppError::bad_input(
            "domain",
            format!("the TXT record {name} does not hold the verification token yet"),
        ));
    }
    let actor_c = actor.clone();
    let metadata = json!({ "domain": claim.domain });
    change_with_claim(app, actor, tenant_id, "VERIFY_DOMAIN", metadata, move |t| {
        not_deleted(t)?;
        ensure_writable(&actor_c, t)?;
        let changes = TenantChanges {
            domain: Some(Some(claim.domain.clone())),
            ..Default::default()
        };
        // Consumed only if it is still this claim (it may have been replaced meanwhile).
        Ok((changes, Some(ClaimWrite::Consume(claim))))
    })
    .await
}

/// DNS look-ups of challenge records: the system resolver, or the server named by
/// `DOMAIN_VERIFICATION_DNS`. Answers are not cached (a record just published must count).
pub struct DnsVerifier {
    resolver: Option<TokioResolver>,
}

impl DnsVerifier {
    pub fn new(server: Option<SocketAddr>) -> DnsVerifier {
        let builder = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                Ok(TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                ))
            }
            None => TokioResolver::builder_tokio(),
        };
        let resolver = builder
            .and_then(|mut b| {
                let opts = b.options_mut();
                opts.cache_size = 0;
                opts.timeout = Duration::from_secs(3);
                opts.attempts = 2;
                b.build()
            })
            .map_err(|e| tracing::warn!(error = %e, "no DNS resolver: domain verification is unavailable"))
            .ok();
        DnsVerifier { resolver }
    }

    /// The TXT strings published at `name` (empty when there are none).
    pub async fn txt(&self, name: &str) -> AppResult<Vec<String>> {
        let Some(resolver) = &self.resolver else {
            return Err(AppError::Unavailable(
                "DNS resolution is not available".into(),
            ));
        };
        match resolver.txt_lookup(format!("{name}.")).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => {
                tracing::warn!(error = %e, %name, "DNS look-up failed");
                Err(AppError::Unavailable(
                    "the DNS look-up failed; try again later".into(),
                ))
            }
        }
    }
}
