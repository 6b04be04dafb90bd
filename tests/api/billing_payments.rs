//! Billing rules against an in-memory payment provider (`billing::payments::Payments`), no HTTP:
//! what the services ask the provider for and what they make of its answers. The end-to-end
//! path through async-stripe and the Stripe-compatible server is `billing_stripe`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tenantry::auth::Actor;
use tenantry::billing::payments::{CheckoutRequest, NewPrice, Payments, SubscriptionState};
use tenantry::error::{AppError, AppResult};
use tenantry::plans::model::BillingCycle;
use uuid::Uuid;

use crate::common::{count, text, TestApp};

/// A provider that records meter events, answers previews with a fixed proration, and can be
/// taken down.
#[derive(Default)]
struct Recording {
    meter_events: Mutex<Vec<(String, String, i64, String)>>,
    down: AtomicBool,
}

fn state(id: &str) -> SubscriptionState {
    SubscriptionState {
        id: id.to_owned(),
        customer: "cus_mem".into(),
        status: "active".into(),
        item_id: Some(format!("si_{id}")),
        price_id: None,
        period_start: None,
        period_end: None,
        trial_end: None,
        cancel_at_period_end: false,
        canceled_at: None,
        metadata: Default::default(),
    }
}

fn refused<T>() -> AppResult<T> {
    Err(AppError::Billing("the provider is down".into()))
}

impl Payments for Recording {
    fn create_customer<'a>(
        &'a self,
        tenant_id: tenantry::ids::TenantId,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, AppResult<String>> {
        Box::pin(async move { Ok(format!("cus_{tenant_id}")) })
    }

    fn subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, AppResult<SubscriptionState>> {
        Box::pin(async move { Ok(state(id)) })
    }

    fn change_price<'a>(
        &'a self,
        sub: &'a SubscriptionState,
        _: &'a str,
        _: tenantry::ids::IntentId,
    ) -> BoxFuture<'a, AppResult<SubscriptionState>> {
        Box::pin(async move { Ok(sub.clone()) })
    }

    fn preview_change<'a>(
        &'a self,
        _: &'a SubscriptionState,
        price_id: &'a str,
    ) -> BoxFuture<'a, AppResult<(i64, String)>> {
        Box::pin(async move {
            assert!(price_id.starts_with("price_professional_"), "{price_id}");
            Ok((1234, "eur".to_owned()))
        })
    }

    fn checkout<'a>(
        &'a self,
        _: CheckoutRequest<'a>,
    ) -> BoxFuture<'a, AppResult<(String, String)>> {
        Box::pin(async move { refused() })
    }

    fn cancel<'a>(
        &'a self,
        sub_id: &'a str,
        _: bool,
        _: Uuid,
    ) -> BoxFuture<'a, AppResult<SubscriptionState>> {
        Box::pin(async move { Ok(state(sub_id)) })
    }

    fn resume<'a>(
        &'a self,
        sub_id: &'a str,
        _: Uuid,
    ) -> BoxFuture<'a, AppResult<SubscriptionState>> {
        Box::pin(async move { Ok(state(sub_id)) })
    }

    fn meter_event<'a>(
        &'a self,
        event_name: &'a str,
        customer: &'a str,
        value: i64,
        identifier: &'a str,
        _: DateTime<Utc>,
    ) -> BoxFuture<'a, AppResult<()>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return refused();
            }
            let e = (
                event_name.to_owned(),
                customer.to_owned(),
                value,
                identifier.to_owned(),
            );
            self.meter_events.lock().unwrap().push(e);
            Ok(())
        })
    }

    fn create_product<'a>(
        &'a self,
        _: tenantry::ids::PlanId,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, AppResult<String>> {
        Box::pin(async move { refused() })
    }

    fn create_price<'a>(&'a self, _: NewPrice<'a>) -> BoxFuture<'a, AppResult<String>> {
        Box::pin(async move { refused() })
    }

    fn archive_price<'a>(&'a self, _: &'a str) -> BoxFuture<'a, AppResult<()>> {
        Box::pin(async move { refused() })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_overage_goes_to_the_provider_once_and_again_after_an_outage() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("starter").create().await;
    let mut c = app.db.superuser().await;
    let soft = format!("select resource as v from quotas where tenant_id = '{}' and enforcement = 'SOFT' order by resource limit 1", t.id);
    let resource = text(&mut c, &soft).await.expect("starter has a SOFT quota");
    count(&mut c, &format!("with u as (update quotas set \"limit\" = 5 where tenant_id = '{}' and resource = '{resource}' returning 1) select count(*) as n from u", t.id)).await;
    count(&mut c, &format!("with u as (update tenants set stripe_customer_id = 'cus_mem' where id = '{}' returning 1) select count(*) as n from u", t.id)).await;
    app.record_usage(&t.admin, &resource, 8).await.ok();

    let provider = Recording::default();
    let db = &app.app.db;
    let r = tenantry::billing::usage::report(db, Some(&provider))
        .await
        .unwrap();
    assert_eq!(r.reported, 1);
    {
        let sent = provider.meter_events.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, format!("tenantry_{resource}"));
        assert_eq!((sent[0].1.as_str(), sent[0].2), ("cus_mem", 3));
    }
    // Nothing new: nothing sent.
    tenantry::billing::usage::report(db, Some(&provider))
        .await
        .unwrap();
    assert_eq!(provider.meter_events.lock().unwrap().len(), 1);

    // Two more while the provider is down: kept pending, then sent with one identifier.
    app.record_usage(&t.admin, &resource, 2).await.ok();
    provider.down.store(true, Ordering::SeqCst);
    let r = tenantry::billing::usage::report(db, Some(&provider))
        .await
        .unwrap();
    assert_eq!((r.reported, r.failed), (0, 1));
    provider.down.store(false, Ordering::SeqCst);
    let r = tenantry::billing::usage::report(db, Some(&provider))
        .await
        .unwrap();
    assert_eq!(r.reported, 1);
    {
        let sent = provider.meter_events.lock().unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].2, 2, "only the overage not reported yet");
        assert_ne!(sent[0].3, sent[1].3, "a new target has a new identifier");
    }

    // LOCAL mode (no provider) reports nothing.
    let r = tenantry::billing::usage::report(db, None).await.unwrap();
    assert_eq!((r.reported, r.failed), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_takes_the_providers_proration_and_a_customer_is_linked() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("starter").create().await;
    let mut c = app.db.superuser().await;
    count(&mut c, &format!("with u as (update billing_subscriptions set stripe_subscription_id = 'sub_mem' where tenant_id = '{}' returning 1) select count(*) as n from u", t.id)).await;
    let provider = Recording::default();
    let (db, actor) = (&app.app.db, Actor::system());
    let id = t.id.into();

    let p = tenantry::billing::preview::preview(
        db,
        Some(&provider),
        &actor,
        id,
        "professional",
        BillingCycle::Monthly,
    )
    .await
    .unwrap();
    assert_eq!((p.proration_amount, p.currency.as_str()), (1234, "eur"));
    assert!(!p.quota_changes.is_empty() || !p.features_added.is_empty());
    // Without a provider the amount comes from the catalogue, in its currency.
    let local = tenantry::billing::preview::preview(
        db,
        None,
        &actor,
        id,
        "professional",
        BillingCycle::Monthly,
    )
    .await
    .unwrap();
    assert_ne!(local.currency, "eur");

    // A tenant without a customer gets one from the provider, linked where the webhook looks.
    let row = tenantry::tenants::service::get(db, &actor, id)
        .await
        .unwrap();
    let customer = tenantry::billing::checkout::ensure_customer(db, &provider, &row)
        .await
        .unwrap();
    assert_eq!(customer, format!("cus_{}", t.id));
    let sql = format!(
        "select stripe_customer_id as v from billing_subscriptions where tenant_id = '{}'",
        t.id
    );
    assert_eq!(text(&mut c, &sql).await.as_deref(), Some(customer.as_str()));
}
