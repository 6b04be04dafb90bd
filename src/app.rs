//! The application state: settings, pools, verifier, caches, and the router assembly. One
//! `App` per process, shared behind an `Arc` by every handler, resolver and job.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use bb8_redis::RedisConnectionManager;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::jwt::JwtVerifier;
use crate::auth::resolve::TenantCache;
use crate::bus::{Bus, Event};
use crate::config::Settings;
use crate::configs::service::ConfigCache;
use crate::db::{roles, Db};
use crate::features::service::FeatureCache;
use crate::graphql::{self, AppSchema};
use crate::http;
use crate::http::ratelimit::RateLimiter;
use crate::ids::TenantId;
use crate::plans::cache::PlanCache;
use crate::quotas::metering::Meter;
use crate::resource_types::cache::ResourceTypeCache;

pub type RedisPool = bb8::Pool<RedisConnectionManager>;

pub struct App {
    pub settings: Settings,
    pub db: Db,
    pub redis: Option<RedisPool>,
    pub jwt: JwtVerifier,
    pub tenant_cache: TenantCache,
    pub features: FeatureCache,
    pub configs: ConfigCache,
    /// Tenant users' memberships (role, status), per (tenant, sub).
    pub members: crate::members::membership::MembershipCache,
    pub bus: Arc<Bus>,
    pub meter: Meter,
    pub plans: PlanCache,
    /// The resource types every usage increment is checked against.
    pub resource_types: ResourceTypeCache,
    pub rate_limiter: RateLimiter,
    /// `previewPlanChange` answers (they cost Stripe calls).
    pub previews: crate::billing::preview_cache::PreviewCache,
    /// DNS look-ups of custom-domain challenges.
    pub domains: crate::tenants::domains::DnsVerifier,
    /// The payment provider (Stripe); `None` in LOCAL billing mode.
    pub payments: Option<Arc<dyn crate::billing::payments::Payments>>,
    /// API key look-ups and last-used marks (`api_keys::auth`).
    pub api_keys: crate::api_keys::ApiKeys,
    /// Notification mail: SMTP (`SMTP_URL`) or, without it, the log.
    pub mailer: crate::notifications::mail::Mailer,
}

impl App {
    /// Connects to PostgreSQL (as the app role) and Redis, and refuses to start when the
    /// effective database role could bypass row level security.
    pub async fn new(settings: Settings) -> anyhow::Result<Arc<App>> {
        crate::telemetry::prometheus();
        let db = Db::connect(
            &settings.database_url,
            &settings.database_app_role,
            settings.database_pool_size,
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to PostgreSQL as role {:?}: {e}. Is DATABASE_URL right, and has \
                     `tenantry migrate` created the role?",
                settings.database_app_role
            )
        })?;
        {
            let mut conn = db.pool().get().await?;
            let role = roles::effective_role(&mut conn).await?;
            roles::check_unprivileged(&role)?;
            tracing::info!(role = %role.name, "database role checked: not superuser, no BYPASSRLS");
        }
        let redis = match &settings.redis_url {
            None => None,
            Some(url) => {
                let manager = RedisConnectionManager::new(url.as_str())?;
                let pool = bb8::Pool::builder()
                    .max_size(16)
                    .connection_timeout(Duration::from_secs(2))
                    .build_unchecked(manager);
                Some((pool, redis::Client::open(url.as_str())?))
            }
        };
        let bus = Arc::new(Bus::new(redis.clone(), &settings.redis_prefix));
        let meter = Meter::start(db.clone(), bus.clone(), settings.usage_writers);
        let jwt = JwtVerifier::from_settings(&settings)?;
        jwt.start();
        let rate_limiter = RateLimiter::new(
            redis.as_ref().map(|(p, _)| p.clone()),
            &settings.redis_prefix,
        )
        .on_redis_error(settings.rate_limit_on_redis_error);
        let payments = crate::billing::stripe::StripeApi::from_settings(&settings)?
            .map(|api| Arc::new(api) as Arc<dyn crate::billing::payments::Payments>);
        let domains = crate::tenants::domains::DnsVerifier::new(settings.domain_verification_dns);
        let key_overlap = settings.api_key_rotation_overlap;
        let mailer = crate::notifications::mail::Mailer::from_settings(&settings)?;
        let app = Arc::new(App {
            domains,
            previews: Default::default(),
            payments,
            settings,
            db,
            redis: redis.map(|(pool, _)| pool),
            jwt,
            tenant_cache: TenantCache::default(),
            features: FeatureCache::default(),
            configs: ConfigCache::default(),
            members: Default::default(),
            bus,
            meter,
            plans: PlanCache::default(),
            resource_types: ResourceTypeCache::default(),
            rate_limiter,
            api_keys: crate::api_keys::ApiKeys::new(key_overlap),
            mailer,
        });
        tokio::spawn(apply_events(Arc::downgrade(&app)));
        Ok(app)
    }

    /// Called after every committed tenant change: drops the tenant's cached resolutions here
    /// at once and on every other instance through the bus.
    pub async fn tenant_changed(&self, tenant_id: TenantId) {
        self.tenant_keys_changed(tenant_id, Vec::new()).await;
    }

    /// Like [`App::tenant_changed`], naming the resolution keys (old and new slug and domain,
    /// see `auth::resolve::keys_of`) whose cached answers, found or not found, are now wrong.
    pub async fn tenant_keys_changed(&self, tenant_id: TenantId, keys: Vec<String>) {
        self.tenant_cache.forget(tenant_id, &keys).await;
        self.previews.invalidate_tenant(tenant_id);
        self.features.invalidate(tenant_id).await;
        self.configs.invalidate(tenant_id).await;
        self.bus
            .publish(Event::TenantChanged { tenant_id, keys })
            .await;
    }

    /// A tenant's members changed: every instance drops their cached memberships (and open
    /// sockets of removed or disabled members close).
    pub async fn members_changed(&self, tenant_id: TenantId) {
        self.members.invalidate_tenant(tenant_id);
        self.bus.publish(Event::MembersChanged { tenant_id }).await;
    }

    /// The plan catalogue changed (a plan or a feature definition): every instance drops its
    /// cached plans, and the feature sets and plan-change previews computed from them.
    pub async fn plans_changed(&self) {
        self.plans.invalidate_all();
        self.features.invalidate_all();
        self.previews.invalidate_all();
        self.bus.publish(Event::PlansChanged).await;
    }

    /// A resource type was created: every instance drops its cached resource types.
    pub async fn resource_types_changed(&self) {
        self.resource_types.invalidate_all();
        self.bus.publish(Event::ResourceTypesChanged).await;
    }

    /// Drops every cached resolution, plan, resource type, feature set and configuration of
    /// this instance.
    pub fn drop_caches(&self) {
        self.plans.invalidate_all();
        self.resource_types.invalidate_all();
        self.tenant_cache.invalidate_all();
        self.previews.invalidate_all();
        self.features.invalidate_all();
        self.configs.invalidate_all();
        self.members.invalidate_all();
        self.api_keys.invalidate_all();
    }

    /// `PING` with a deadline, for `/ready`. `None` when Redis is not configured.
    pub async fn redis_ok(&self, timeout: Duration) -> Option<bool> {
        let pool = self.redis.as_ref()?;
        let check = async {
            let mut conn = pool.get().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut *conn)
                .await
                .ok()
        };
        Some(matches!(
            tokio::time::timeout(timeout, check).await,
            Ok(Some(_))
        ))
    }
}

/// What every HTTP handler gets.
#[derive(Clone)]
pub struct HttpState {
    pub app: Arc<App>,
    pub schema: AppSchema,
    /// Open WebSocket connections per tenant on this instance.
    pub sockets: Arc<graphql::ws::Sockets>,
}

pub fn router(app: Arc<App>) -> Router {
    let schema = graphql::build_schema(app.clone());
    let limits = &app.settings.graphql;
    let body_limit = limits.max_body_bytes;
    let timeout = app.settings.request_timeout;
    let state = HttpState {
        app,
        schema,
        sockets: Default::default(),
    };
    Router::new()
        .route(
            "/graphql",
            post(graphql::http::post).get(graphql::http::get),
        )
        .route("/graphql/ws", get(graphql::ws::handler))
        .route(http::graphiql::ASSETS_ROUTE, get(http::graphiql::asset))
        .route("/health", get(http::health))
        .route("/ready", get(http::ready))
        .route("/metrics", get(http::metrics))
        .route("/webhooks/stripe", post(crate::billing::webhook::handler))
        .route("/exports/tenants/{id}", get(http::export::download))
        .merge(http::internal::routes(state.clone()))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::map_request(http::request_id::sanitize))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(crate::telemetry::request_span))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(axum::middleware::from_fn(http::record_metrics))
                .layer(TimeoutLayer::with_status_code(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    timeout,
                ))
                .layer(DefaultBodyLimit::max(body_limit))
                .layer(axum::middleware::from_fn_with_state(
                    body_limit,
                    http::limit_body,
                )),
        )
}

/// Applies bus events to this instance's caches, for as long as the app lives. A resync of
/// the bus (Redis subscription lost, still down, or back) drops every cache entry: an
/// invalidation published meanwhile by another instance may never arrive.
async fn apply_events(app: std::sync::Weak<App>) {
    let Some((mut rx, mut resyncs)) = app.upgrade().map(|a| (a.bus.subscribe(), a.bus.resyncs()))
    else {
        return;
    };
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            changed = resyncs.changed() => {
                if changed.is_err() {
                    return;
                }
                let Some(app) = app.upgrade() else { return };
                app.drop_caches();
                continue;
            }
        };
        let Some(app) = app.upgrade() else { return };
        match event {
            Ok(Event::TenantChanged { tenant_id, keys }) => {
                app.tenant_cache.forget(tenant_id, &keys).await;
                app.previews.invalidate_tenant(tenant_id);
                app.features.invalidate(tenant_id).await;
                app.configs.invalidate(tenant_id).await;
            }
            Ok(Event::FeaturesChanged { tenant_id }) => app.features.invalidate(tenant_id).await,
            Ok(Event::ConfigChanged { tenant_id }) => app.configs.invalidate(tenant_id).await,
            Ok(Event::MembersChanged { tenant_id }) => app.members.invalidate_tenant(tenant_id),
            Ok(Event::PlansChanged) => {
                app.plans.invalidate_all();
                app.features.invalidate_all();
                app.previews.invalidate_all();
            }
            Ok(Event::ResourceTypesChanged) => app.resource_types.invalidate_all(),
            Ok(Event::ApiKeyChanged { key_id, .. }) => app.api_keys.forget(key_id).await,
            Ok(Event::QuotaAlert(_)) => {}
            Ok(Event::Resync) => app.drop_caches(),
            // Missed events: drop everything rather than serve stale entries.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => app.drop_caches(),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
