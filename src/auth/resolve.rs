//! Tenant resolution (SPEC §3), highest priority first: the JWT's `tenant_id` claim, the
//! `X-Tenant-ID` header (platform admins; a tenant user's header must equal the claim), then
//! the Host header (`<slug>.<BASE_DOMAIN>` or a custom domain; public look-ups only).
//! Results are cached in-process and invalidated on every tenant change (and, with Redis,
//! on every instance: see `app::App::tenant_changed`).

use std::time::Duration;

use axum::http::HeaderMap;
use moka::future::Cache;
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use super::{cross_tenant_denied, Actor, Caller, JwtVerifierRef, Role};
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::tenants::model::{TenantRow, TenantStatus};
use crate::tenants::store;

#[derive(Clone)]
pub struct TenantCache {
    cache: Cache<String, TenantRow>,
}

impl Default for TenantCache {
    fn default() -> Self {
        TenantCache {
            cache: Cache::builder()
                .max_capacity(50_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }
}

impl TenantCache {
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    async fn cached(
        &self,
        key: String,
        load: impl std::future::Future<Output = AppResult<Option<TenantRow>>>,
    ) -> AppResult<Option<TenantRow>> {
        if let Some(hit) = self.cache.get(&key).await {
            metrics::counter!("tenantry_cache_requests_total", "cache" => "tenant", "outcome" => "hit").increment(1);
            return Ok(Some(hit));
        }
        metrics::counter!("tenantry_cache_requests_total", "cache" => "tenant", "outcome" => "miss").increment(1);
        let row = load.await?;
        if let Some(row) = &row {
            self.cache.insert(key, row.clone()).await;
        }
        Ok(row)
    }

    /// By id, read within that tenant's own scope.
    pub async fn by_id(&self, db: &Db, id: Uuid) -> AppResult<Option<TenantRow>> {
        self.cached(
            format!("id:{id}"),
            db.scoped(Scope::Tenant(id), |c| {
                async move { Ok(store::find(c, id).await?) }.scope_boxed()
            }),
        )
        .await
    }

    /// By UUID or slug: a platform look-up (resolution runs before any tenant scope exists).
    pub async fn by_id_or_slug(&self, db: &Db, key: &str) -> AppResult<Option<TenantRow>> {
        if let Ok(id) = Uuid::parse_str(key) {
            return self.by_id(db, id).await;
        }
        let slug = key.to_ascii_lowercase();
        self.cached(
            format!("slug:{slug}"),
            db.scoped(Scope::Platform("tenant_resolution"), |c| {
                async move { Ok(store::find_by_slug(c, &slug).await?) }.scope_boxed()
            }),
        )
        .await
    }

    pub async fn by_domain(&self, db: &Db, domain: &str) -> AppResult<Option<TenantRow>> {
        let domain = domain.to_ascii_lowercase();
        self.cached(
            format!("domain:{domain}"),
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
    row.filter(|t| t.status() != TenantStatus::Deleted)
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

/// Authenticates the caller from a bearer token and resolves the tenant scope.
pub async fn resolve(
    jwt: JwtVerifierRef<'_>,
    cache: &TenantCache,
    db: &Db,
    base_domain: Option<&str>,
    token: Option<&str>,
    headers: &HeaderMap,
) -> AppResult<Resolved> {
    let caller = match token {
        Some(t) => Caller::User(jwt.verify(t)?),
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
