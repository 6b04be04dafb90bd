//! `GET /exports/tenants/{id}`: the tenant export (GDPR) as a streamed JSON download, without
//! `EXPORT_MAX_ROWS`. Same authentication and tenant resolution as GraphQL (bearer JWT), same
//! rules as `exportTenantData`: a tenant admin of that tenant or a platform admin; members get
//! `FORBIDDEN`, another tenant's id `NOT_FOUND` (counted as a cross-tenant attempt), no token
//! `UNAUTHENTICATED`. `?tables=a,b` narrows the export like `tables` in GraphQL. A download
//! costs one unit of the caller's plan rate limit, like one GraphQL operation; a client that
//! stops reading for 30 s ends it (and its snapshot transaction).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::app::HttpState;
use crate::auth::resolve::{bearer, resolve};
use crate::auth::Actor;
use crate::error::{AppError, AppResult};
use crate::graphql::admission;
use crate::ids::TenantId;

#[derive(Deserialize)]
pub struct DownloadQuery {
    tables: Option<String>,
}

pub async fn download(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Response {
    match stream(st, &id, q, &headers).await {
        Ok(resp) => resp,
        Err(err) => err.into_response(),
    }
}

async fn stream(
    st: HttpState,
    id: &str,
    q: DownloadQuery,
    headers: &HeaderMap,
) -> AppResult<Response> {
    let app = st.app;
    let token = bearer(headers)?;
    let resolved = resolve(
        &app.jwt,
        &app.api_keys,
        &app.tenant_cache,
        &app.db,
        app.settings.base_domain.as_deref(),
        token,
        headers,
    )
    .await?;
    if resolved.caller.principal().is_none() {
        return Err(AppError::Unauthenticated("authentication required".into()));
    }
    // One unit of the plan's rate limit, like one GraphQL operation.
    let charged = admission::charge(&app, &resolved.caller, resolved.tenant.as_ref(), 1).await?;
    if let Some(err) = charged.as_ref().and_then(admission::refusal) {
        return Err(err);
    }
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let actor = Actor::from_caller(&resolved.caller, request_id);
    let tenant_id = TenantId::parse("id", id)?;
    let only = q.tables.map(|t| {
        t.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let (first, rx) = crate::tenants::export::download(app, actor, tenant_id, only).await?;
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item.map_err(|e| std::io::Error::other(e.to_string())), rx))
    });
    let body =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"tenant-{tenant_id}.json\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
