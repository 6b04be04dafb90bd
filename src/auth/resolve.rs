//! Tenant resolution (SPEC §3), highest priority first: the JWT's `tenant_id` claim, the
//! `X-Tenant-ID` header (platform admins; a tenant user's header must equal the claim), then
//! the Host header (`<slug>.<BASE_DOMAIN>` or a custom domain; public look-ups only).
//! Results are cached in-process, misses too (briefly, bounded: an anonymous caller sending
//! random Host headers must not cost one query each), and invalidated per tenant on every
//! change, on every instance (see `app::App::tenant_changed`).

use std::time::Duration;

use axum::http::HeaderMap;
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use super::remembered::Remembered;
use super::{cross_tenant_denied, Actor, Caller, JwtVerifierRef, Role};
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::tenants::model::{TenantDomain, TenantRow, TenantSlug, TenantStatus};
use crate::tenants::store;

/// How long a look-up that found no tenant is remembered: long enough that a flood of random
/// Host headers costs one query per distinct name, short enough that nothing a missed
/// invalidation could hide lasts.
const MISS_TTL: Duration = Duration::from_secs(30);
/// Bounded separately from the hits, so a flood of unknown names never evicts real tenants.
const MISS_CAPACITY: u64 = 20_000;

/// Resolved tenants by key (`id:<uuid>`, `slug:<slug>`, `domain:<host>`), and the keys known
/// to name no tenant (the negative cache). Invalidation is per tenant: [`TenantCache::forget`].
#[derive(Clone)]
pub struct TenantCache(Remembered<String, TenantRow>);

impl Default for TenantCache {
    fn default() -> Self {
        TenantCache(Remembered::new(
            "tenant",
            (50_000, Duration::from_secs(60)),
            (MISS_CAPACITY, MISS_TTL),
        ))
    }
}

/// The cache keys a tenant row can be found under, besides its id (slug, verified domain).
pub fn keys_of(row: &TenantRow) -> Vec<String> {
    let mut keys = vec![format!("slug:{}", row.slug.to_ascii_lowercase())];
    if let Some(d) = &row.domain {
        keys.push(domain_key(d));
    }
    keys
}

pub fn domain_key(domain: &str) -> String {
    format!("domain:{}", domain.to_ascii_lowercase())
}

impl TenantCache {
    /// Drops everything (used only when this instance may have missed invalidation events).
    pub fn invalidate_all(&self) {
        self.0.invalidate_all();
    }

    /// Drops what is cached about one tenant: its id entry, the given keys (its old and new
    /// slug and domain — positive or negative entries alike, so a name that just became a
    /// tenant resolves at once), and any other entry holding that tenant's row.
    pub async fn forget(&self, tenant_id: TenantId, keys: &[String]) {
        self.0.forget(&format!("id:{tenant_id}")).await;
        for key in keys {
            self.0.forget(key).await;
        }
        // Callers that know only the id (jobs, billing) rely on this for slug/domain entries.
        self.0.forget_where(move |_, row| row.id == tenant_id, None);
    }

    async fn cached(
        &self,
        key: String,
        load: impl std::future::Future<Output = AppResult<Option<TenantRow>>>,
    ) -> AppResult<Option<TenantRow>> {
        self.0.get(key, load).await
    }

    /// By id, read within that tenant's own scope.
    pub async fn by_id(&self, db: &Db, id: TenantId) -> AppResult<Option<TenantRow>> {
        self.cached(
            format!("id:{id}"),
            db.scoped(Scope::Tenant(id), |c| {
                async move { Ok(store::find(c, id).await?) }.scope_boxed()
            }),
        )
        .await
    }

    /// By UUID or slug: a platform look-up (resolution runs before any tenant scope exists).
    /// A key that cannot be a slug names no tenant and costs no query.
    pub async fn by_id_or_slug(&self, db: &Db, key: &str) -> AppResult<Option<TenantRow>> {
        if let Ok(id) = Uuid::parse_str(key) {
            return self.by_id(db, id.into()).await;
        }
        let Ok(slug) = TenantSlug::parse(&key.to_ascii_lowercase()) else {
            return Ok(None);
        };
        let slug = slug.into_inner();
        self.cached(
            format!("slug:{slug}"),
            db.scoped(Scope::Platform("tenant_resolution"), |c| {
                async move { Ok(store::find_by_slug(c, &slug).await?) }.scope_boxed()
            }),
        )
        .await
    }

    /// By verified custom domain. A string that is not a host name costs no query.
    pub async fn by_domain(&self, db: &Db, domain: &str) -> AppResult<Option<TenantRow>> {
        let Ok(domain) = TenantDomain::parse(domain) else {
            return Ok(None);
        };
        let domain = domain.into_inner();
        self.cached(
            domain_key(&domain),
            db.scoped(Scope::Platform("tenant_resolution"), |c| {
                async move { Ok(store::find_by_domain(c, &domain).await?) }.scope_boxed()
            }),
        )
        .await
    }
}

/// The outcome of authentication and tenant resolution for one request.
pub struct Resolved {
    pub caller: Caller,
    pub tenant: Option<TenantRow>,
    pub public_tenant: Option<TenantRow>,
}

fn live(row: Option<TenantRow>) -> Option<TenantRow> {
    row.filter(|t| t.status != TenantStatus::Deleted)
}

pub fn bearer(headers: &HeaderMap) -> AppResult<Option<&str>> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::Unauthenticated("invalid Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(AppError::Unauthenticated(
            "Authorization must be `Bearer <jwt>`".into(),
        )),
    }
}

/// Authenticates the caller from a bearer token and resolves the tenant scope. A token
/// starting with `tnt_` is an API key (`api_keys::auth`), never tried as a JWT.
pub async fn resolve(
    jwt: JwtVerifierRef<'_>,
    api_keys: &crate::api_keys::ApiKeys,
    cache: &TenantCache,
    db: &Db,
    base_domain: Option<&str>,
    token: Option<&str>,
    headers: &HeaderMap,
) -> AppResult<Resolved> {
    if let Some(key) = token.filter(|t| crate::api_keys::model::is_api_key(t)) {
        return api_keys.resolve(db, cache, key, headers).await;
    }
    let caller = match token {
        Some(t) => Caller::User(jwt.verify(t).await?),
        None => Caller::Anonymous,
    };
    let header = headers
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());

    let Caller::User(principal) = &caller else {
        let public_tenant = match host_of(headers) {
            Some(host) => resolve_host(cache, db, base_domain, &host).await?,
            None => None,
        };
        return Ok(Resolved {
            caller,
            tenant: None,
            public_tenant,
        });
    };

    if let Some(claim) = principal.tenant_id {
        let tenant =
            live(cache.by_id(db, claim).await?).ok_or_else(|| AppError::not_found("tenant"))?;
        if let Some(h) = header {
            if h != tenant.id.to_string() && !h.eq_ignore_ascii_case(&tenant.slug) {
                let actor = Actor::from_caller(&caller, None);
                let _ = cross_tenant_denied(&actor, tenant.id, "tenant_header");
                return Err(AppError::forbidden(
                    "X-Tenant-ID does not match the token's tenant",
                ));
            }
        }
        return Ok(Resolved {
            caller,
            tenant: Some(tenant),
            public_tenant: None,
        });
    }

    // Only platform admins reach here (tenant roles require the claim).
    debug_assert_eq!(principal.role, Role::PlatformAdmin);
    let tenant = match header {
        Some(h) => Some(
            live(cache.by_id_or_slug(db, h).await?).ok_or_else(|| AppError::not_found("tenant"))?,
        ),
        None => None,
    };
    Ok(Resolved {
        caller,
        tenant,
        public_tenant: None,
    })
}

fn host_of(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

async fn resolve_host(
    cache: &TenantCache,
    db: &Db,
    base_domain: Option<&str>,
    host: &str,
) -> AppResult<Option<TenantRow>> {
    if let Some(base) = base_domain {
        if host == base {
            return Ok(None);
        }
        if let Some(slug) = host.strip_suffix(base).and_then(|s| s.strip_suffix('.')) {
            if slug.contains('.') || slug.is_empty() {
                return Ok(None);
            }
            return Ok(live(cache.by_id_or_slug(db, slug).await?));
        }
    }
    // Custom domains only: IPs and single-label hosts (localhost) name no tenant.
    if !host.contains('.') || host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(None);
    }
    Ok(live(cache.by_domain(db, host).await?))
}
