//! The service-to-service REST API (SPEC §9), behind `X-Service-Token` (compared in constant
//! time; without `SERVICE_TOKEN` configured every call is refused). Service traffic is not
//! throttled by tenants' plans. Every route calls the same services as GraphQL.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::HttpState;
use crate::auth::{Actor, ActorType};
use crate::error::AppError;
use crate::tenants::model::{TenantRow, TenantStatus};
use crate::{features, quotas};

pub fn routes(state: HttpState) -> Router<HttpState> {
    Router::new()
        .route("/internal/tenants/validate", post(validate))
        .route("/internal/tenants/{id}/context", get(context))
        .route("/internal/tenants/{id}/features", get(features_of))
        .route("/internal/tenants/{id}/quotas", get(quotas_of))
        .route("/internal/tenants/{id}/usage", post(usage))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            require_service_token,
        ))
}

async fn require_service_token(State(st): State<HttpState>, req: Request, next: Next) -> Response {
    let given = req.headers().get("x-service-token").map(|v| v.as_bytes());
    let ok = match (&st.app.settings.service_token, given) {
        (Some(expected), Some(given)) => {
            constant_time_eq::constant_time_eq(expected.as_bytes(), given)
        }
        _ => false,
    };
    if !ok {
        metrics::counter!("tenantry_internal_unauthorized_total").increment(1);
        return AppError::Unauthenticated("missing or invalid X-Service-Token".into())
            .into_response();
    }
    next.run(req).await
}

fn service_actor() -> Actor {
    Actor {
        kind: ActorType::Service,
        id: Some("service".into()),
        role: None,
        tenant_id: None,
        request_id: None,
    }
}

/// The tenant named in the path (UUID or slug); deleted tenants do not exist here.
async fn tenant(st: &HttpState, key: &str) -> Result<TenantRow, AppError> {
    st.app
        .tenant_cache
        .by_id_or_slug(&st.app.db, key)
        .await?
        .filter(|t| t.status != TenantStatus::Deleted)
        .ok_or_else(|| AppError::not_found("tenant"))
}

async fn feature_list(st: &HttpState, t: &TenantRow) -> Result<Vec<Value>, AppError> {
    let flags = features::service::effective(
        &st.app,
        &st.app.db,
        crate::db::Scope::Tenant(t.id),
        t.id,
        t.plan_id,
    )
    .await?;
    Ok(flags
        .into_iter()
        .map(|f| json!({ "key": f.key, "enabled": f.enabled, "source": format!("{:?}", f.source).to_uppercase(), "expiresAt": f.expires_at }))
        .collect())
}

async fn quota_list(st: &HttpState, t: &TenantRow) -> Result<Vec<Value>, AppError> {
    let id = t.id;
    let rows = st
        .app
        .db
        .scoped(crate::db::Scope::Tenant(id), |c| {
            scoped_futures::ScopedFutureExt::scope_boxed(async move {
                Ok(quotas::store::of_tenants(c, &[id]).await?)
            })
        })
        .await?;
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(|q| q.current(now))
        .map(|q| {
            json!({ "resource": q.resource, "limit": q.limit, "used": q.used, "remaining": q.remaining(),
                    "unit": q.unit, "resetPeriod": q.reset_period, "periodStart": q.period_start,
                    "enforcement": q.enforcement, "alertThresholds": q.alert_thresholds })
        })
        .collect())
}

async fn context(
    State(st): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let t = tenant(&st, &id).await?;
    let plan = st.app.plans.by_id(&st.app.db, t.plan_id).await?;
    Ok(Json(json!({
        "tenant": { "id": t.id, "slug": t.slug, "name": t.name, "status": t.status, "region": t.region, "domain": t.domain },
        "plan": { "slug": plan.slug, "rateLimitPerMinute": plan.rate_limit_per_minute },
        "features": feature_list(&st, &t).await?,
        "quotas": quota_list(&st, &t).await?,
    })))
}

async fn features_of(
    State(st): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let t = tenant(&st, &id).await?;
    Ok(Json(
        json!({ "tenantId": t.id, "features": feature_list(&st, &t).await? }),
    ))
}

async fn quotas_of(
    State(st): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let t = tenant(&st, &id).await?;
    Ok(Json(
        json!({ "tenantId": t.id, "quotas": quota_list(&st, &t).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UsageBody {
    resource: String,
    amount: i64,
    idempotency_key: Option<String>,
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, AppError> {
    b.map(|Json(v)| v).map_err(|e| AppError::BadInput {
        message: e.body_text(),
        field: None,
    })
}

/// The hot path other services call: same semantics as `recordUsage`.
async fn usage(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    payload: Result<Json<UsageBody>, JsonRejection>,
) -> Result<Json<Value>, AppError> {
    let b = body(payload)?;
    let tenant_id = match Uuid::parse_str(&id) {
        Ok(u) => u.into(),
        Err(_) => tenant(&st, &id).await?.id,
    };
    let out = quotas::service::record_usage(
        &st.app,
        &service_actor(),
        tenant_id,
        b.resource,
        b.amount,
        b.idempotency_key,
    )
    .await?;
    Ok(Json(serde_json::to_value(out).map_err(AppError::internal)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ValidateBody {
    tenant_id: Option<String>,
    slug: Option<String>,
    domain: Option<String>,
}

/// Is this tenant (by id, slug or domain) known and active?
async fn validate(
    State(st): State<HttpState>,
    payload: Result<Json<ValidateBody>, JsonRejection>,
) -> Result<Json<Value>, AppError> {
    let b = body(payload)?;
    let app = &st.app;
    let found = match (b.tenant_id, b.slug, b.domain) {
        (Some(id), None, None) => app.tenant_cache.by_id_or_slug(&app.db, &id).await?,
        (None, Some(slug), None) => app.tenant_cache.by_id_or_slug(&app.db, &slug).await?,
        (None, None, Some(domain)) => app.tenant_cache.by_domain(&app.db, &domain).await?,
        _ => {
            return Err(AppError::bad_input(
                "tenantId",
                "give exactly one of tenantId, slug, domain",
            ))
        }
    }
    .filter(|t| t.status != TenantStatus::Deleted);
    Ok(Json(match found {
        Some(t) => {
            json!({ "valid": true, "active": t.status == TenantStatus::Active, "tenantId": t.id, "slug": t.slug, "status": t.status })
        }
        None => json!({ "valid": false, "active": false }),
    }))
}
