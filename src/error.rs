//! The one application error type. Each variant is one of the contract's error codes
//! (SPEC §5); GraphQL, the internal REST API and the webhook all map from it. Database and
//! other internal failures become `INTERNAL` for the client while the detail goes to the log
//! with the request id: `Display` of a database error never reaches a client.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    BadInput {
        message: String,
        field: Option<&'static str>,
    },
    #[error("{message}")]
    Conflict {
        message: String,
        field: Option<&'static str>,
    },
    #[error("quota exceeded for {resource}")]
    QuotaExceeded {
        resource: String,
        limit: i64,
        used: i64,
        remaining: i64,
    },
    #[error("feature {0} is disabled for this tenant")]
    FeatureDisabled(String),
    #[error("feature {0} is not included in the tenant's plan")]
    FeatureNotInPlan(String),
    #[error("tenant is suspended; only billing recovery is allowed")]
    TenantSuspended,
    #[error("rate limit exceeded")]
    RateLimited { limit: u64, retry_after_secs: u64 },
    /// The operation's cost is more than its tenant's bucket holds now (SPEC §4, cost limits).
    #[error("query costs {requested} and {available} of the tenant's {size} points are available; they refill at {rate:.1} a second")]
    CostThrottled {
        requested: u64,
        available: u64,
        size: u64,
        rate: f64,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Billing(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(Arc<anyhow::Error>),
}

pub type AppResult<T> = Result<T, AppError>;

/// Every `extensions.code` the contract names (SPEC §5): the closed set metrics label with.
pub const CODES: [&str; 13] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "CONFLICT",
    "QUOTA_EXCEEDED",
    "FEATURE_DISABLED",
    "FEATURE_NOT_IN_PLAN",
    "TENANT_SUSPENDED",
    "RATE_LIMITED",
    "BILLING_ERROR",
    "SERVICE_UNAVAILABLE",
    "INTERNAL",
];

impl AppError {
    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        AppError::BadInput {
            message: message.into(),
            field: Some(field),
        }
    }

    pub fn conflict(field: Option<&'static str>, message: impl Into<String>) -> Self {
        AppError::Conflict {
            message: message.into(),
            field,
        }
    }

    pub fn not_found(what: &str) -> Self {
        AppError::NotFound(format!("{what} not found"))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Forbidden(message.into())
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(Arc::new(err.into()))
    }

    /// The contract's `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::BadInput { .. } => "BAD_USER_INPUT",
            AppError::Conflict { .. } => "CONFLICT",
            AppError::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            AppError::FeatureDisabled(_) => "FEATURE_DISABLED",
            AppError::FeatureNotInPlan(_) => "FEATURE_NOT_IN_PLAN",
            AppError::TenantSuspended => "TENANT_SUSPENDED",
            AppError::RateLimited { .. } | AppError::CostThrottled { .. } => "RATE_LIMITED",
            AppError::Billing(_) => "BILLING_ERROR",
            AppError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadInput { .. } => StatusCode::BAD_REQUEST,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::QuotaExceeded { .. }
            | AppError::RateLimited { .. }
            | AppError::CostThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::FeatureDisabled(_) | AppError::FeatureNotInPlan(_) => StatusCode::FORBIDDEN,
            AppError::TenantSuspended => StatusCode::FORBIDDEN,
            AppError::Billing(_) => StatusCode::BAD_GATEWAY,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Extra fields for clients (`field`, `limit`, `retryAfter`, ...), next to `code`.
    pub fn extra(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        match self {
            AppError::BadInput { field: Some(f), .. }
            | AppError::Conflict { field: Some(f), .. } => {
                m.insert("field".into(), json!(f));
            }
            AppError::QuotaExceeded {
                resource,
                limit,
                used,
                remaining,
            } => {
                m.insert("resource".into(), json!(resource));
                m.insert("limit".into(), json!(limit));
                m.insert("used".into(), json!(used));
                m.insert("remaining".into(), json!(remaining));
            }
            AppError::FeatureDisabled(f) | AppError::FeatureNotInPlan(f) => {
                m.insert("feature".into(), json!(f));
            }
            AppError::RateLimited {
                limit,
                retry_after_secs,
            } => {
                m.insert("limit".into(), json!(limit));
                m.insert("retryAfter".into(), json!(retry_after_secs));
            }
            AppError::CostThrottled {
                requested,
                available,
                retry_after_secs,
                ..
            } => {
                m.insert("requestedQueryCost".into(), json!(requested));
                m.insert("currentlyAvailable".into(), json!(available));
                m.insert("retryAfter".into(), json!(retry_after_secs));
            }
            _ => {}
        }
        m
    }

    /// The message a client may see. Internal details stay in the log.
    pub fn public_message(&self) -> String {
        if let AppError::Internal(err) = self {
            tracing::error!(error = ?err, "internal error");
            return "internal error".into();
        }
        self.to_string()
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        match err {
            diesel::result::Error::NotFound => AppError::NotFound("not found".into()),
            // Text PostgreSQL cannot store (NUL, invalid UTF-8) is the caller's input, wherever
            // it came in: the REST API, a header, a path segment.
            diesel::result::Error::DatabaseError(_, ref info)
                if info.message().contains("invalid byte sequence")
                    || info
                        .message()
                        .contains("unsupported Unicode escape sequence") =>
            {
                AppError::BadInput {
                    message: "text may not contain the NUL character (U+0000)".into(),
                    field: None,
                }
            }
            other => AppError::internal(other),
        }
    }
}

impl From<diesel_async::pooled_connection::bb8::RunError> for AppError {
    fn from(err: diesel_async::pooled_connection::bb8::RunError) -> Self {
        tracing::warn!(error = %err, "database pool");
        AppError::Unavailable("database unavailable, retry later".into())
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        let mut gql = async_graphql::Error::new(err.public_message());
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set("code", err.code());
        for (k, v) in err.extra() {
            if let Ok(v) = async_graphql::Value::from_json(v) {
                ext.set(k, v);
            }
        }
        gql.extensions = Some(ext);
        gql
    }
}

/// REST shape (SPEC §9): `{ "error": { "code", "message", ... } }`.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("code".into(), json!(self.code()));
        body.insert("message".into(), json!(self.public_message()));
        body.extend(self.extra());
        let mut resp = (self.status(), axum::Json(json!({ "error": body }))).into_response();
        if let AppError::RateLimited {
            retry_after_secs, ..
        }
        | AppError::CostThrottled {
            retry_after_secs, ..
        } = &self
        {
            if let Ok(v) = retry_after_secs.to_string().parse() {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// An error and its causes on one line (hyper's own text is only "client error (Connect)").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
