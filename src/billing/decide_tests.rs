//! The billing state machine, exhaustively: every handled event type × every stored
//! subscription status, fresh and stale, and out-of-order pairs.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use SubscriptionStatus::*;

const STATUSES: [SubscriptionStatus; 7] = [
    Trialing, Active, PastDue, Canceled, Expired, Incomplete, Unpaid,
];

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

fn stored(status: SubscriptionStatus) -> Stored {
    Stored {
        status,
        stripe_subscription_id: Some("sub_1".into()),
        grace_period_end: None,
        stripe_updated_at: Some(t(0)),
        payment_updated_at: Some(t(0)),
        last_payment: None,
    }
}

/// Our status back in Stripe's words.
fn stripe(s: SubscriptionStatus) -> &'static str {
    match s {
        Trialing => "trialing",
        Active => "active",
        PastDue => "past_due",
        Canceled => "canceled",
        Expired => "incomplete_expired",
        Incomplete => "incomplete",
        Unpaid => "unpaid",
    }
}

/// Applies one event to the stored state as [`super::super::apply`] does.
fn step(s: &Stored, kind: EventKind, sub_status: &str, at: DateTime<Utc>) -> Stored {
    match kind {
        EventKind::CheckoutCompleted => s.clone(),
        EventKind::SubscriptionCreated
        | EventKind::SubscriptionUpdated
        | EventKind::SubscriptionDeleted => match subscription_event(Some(s), "sub_1", at) {
            Ok(()) => {
                let m = mirror(s, sub_status, kind == EventKind::SubscriptionDeleted, at);
                s.mirrored("sub_1", &m, at)
            }
            Err(_) => s.clone(),
        },
        _ => {
            let d = invoice(kind, None, Some("sub_1"), at, None, Some(s)).unwrap();
            s.paid(&d.payment, at)
        }
    }
}

#[test]
fn every_kind_parses_back() {
    for k in EventKind::ALL {
        assert_eq!(EventKind::parse(k.as_str()), Some(k));
    }
    assert_eq!(EventKind::parse("customer.created"), None);
}

#[test]
fn every_event_type_over_every_status() {
    for kind in EventKind::ALL {
        for status in STATUSES {
            let s = stored(status);
            let fresh = t(10);
            let after = step(&s, kind, "active", fresh);
            let expected = match kind {
                EventKind::CheckoutCompleted => status,
                EventKind::SubscriptionCreated | EventKind::SubscriptionUpdated => Active,
                EventKind::SubscriptionDeleted => Canceled,
                EventKind::InvoicePaymentFailed if is_live(status) => PastDue,
                EventKind::InvoicePaid | EventKind::InvoicePaymentSucceeded
                    if matches!(status, PastDue | Unpaid | Incomplete) =>
                {
                    Active
                }
                _ => status,
            };
            assert_eq!(after.status, expected, "{} on {status:?}", kind.as_str());
            // Unpaid states carry a grace period, others none.
            let graced = matches!(after.status, PastDue | Unpaid);
            if after.status != status || kind.as_str().starts_with("customer.subscription") {
                assert_eq!(
                    after.grace_period_end.is_some(),
                    graced,
                    "{}",
                    kind.as_str()
                );
            }
            // Payment outcomes are stamped; other invoice events leave the stamp alone.
            let stamped = after.payment_updated_at == Some(fresh);
            assert_eq!(stamped, kind.is_payment_outcome(), "{}", kind.as_str());

            // An event older than the stored state changes nothing at all.
            let newer = Stored {
                stripe_updated_at: Some(t(20)),
                payment_updated_at: Some(t(20)),
                ..s.clone()
            };
            assert_eq!(
                step(&newer, kind, "active", fresh),
                newer,
                "stale {}",
                kind.as_str()
            );
        }
    }
}

#[test]
fn stripe_statuses_map_and_unknown_ones_end_the_subscription() {
    for s in STATUSES {
        assert_eq!(map_status(stripe(s)), s);
    }
    assert_eq!(map_status("paused"), Expired);
}

#[test]
fn a_payment_failure_keeps_the_first_grace_period() {
    let s = Stored {
        grace_period_end: Some(t(99)),
        ..stored(PastDue)
    };
    let d = invoice(
        EventKind::InvoicePaymentFailed,
        None,
        None,
        t(5),
        None,
        Some(&s),
    )
    .unwrap();
    assert_eq!(
        d.payment,
        Payment::Set {
            outcome: PaymentOutcome::Failed,
            status: PastDue,
            grace_period_end: Some(t(99))
        }
    );
    let fresh = stored(Active);
    let d = invoice(
        EventKind::InvoicePaymentFailed,
        None,
        None,
        t(5),
        None,
        Some(&fresh),
    )
    .unwrap();
    assert_eq!(
        d.payment,
        Payment::Set {
            outcome: PaymentOutcome::Failed,
            status: PastDue,
            grace_period_end: Some(t(5) + Duration::days(GRACE_PERIOD_DAYS))
        }
    );
}

/// Two events delivered in either order end in the state of the order Stripe created them in
/// (for two payment outcomes: the newer one decides).
#[test]
fn out_of_order_pairs_converge() {
    let kinds_and_status = [
        (EventKind::SubscriptionUpdated, "active"),
        (EventKind::SubscriptionUpdated, "past_due"),
        (EventKind::SubscriptionDeleted, "canceled"),
        (EventKind::InvoicePaymentFailed, ""),
        (EventKind::InvoicePaid, ""),
        (EventKind::InvoicePaymentSucceeded, ""),
        (EventKind::InvoiceCreated, ""),
    ];
    for start in STATUSES {
        for (k1, s1) in kinds_and_status {
            for (k2, s2) in kinds_and_status {
                let s = stored(start);
                let (a1, a2) = (t(10), t(20));
                let in_order = step(&step(&s, k1, s1, a1), k2, s2, a2);
                let reversed = step(&step(&s, k2, s2, a2), k1, s1, a1);
                if k1.is_payment_outcome() && k2.is_payment_outcome() {
                    // Two payment outcomes: the newer one wins, whatever the order.
                    for end in [&in_order, &reversed] {
                        let failed = k2 == EventKind::InvoicePaymentFailed;
                        assert_eq!(end.status == PastDue, failed && is_live(start), "{start:?}");
                    }
                    continue;
                }
                assert_eq!(
                    in_order.status,
                    reversed.status,
                    "{start:?}: {} then {} vs reversed",
                    k1.as_str(),
                    k2.as_str()
                );
            }
        }
    }
}

#[test]
fn events_of_a_replaced_subscription_are_ignored_while_the_new_one_lives() {
    let s = stored(Active);
    assert_eq!(
        subscription_event(Some(&s), "sub_old", t(10)),
        Err(Ignore::ReplacedSubscription)
    );
    // Once the current one has ended, another subscription may take over.
    let ended = stored(Canceled);
    assert_eq!(subscription_event(Some(&ended), "sub_new", t(10)), Ok(()));
    assert_eq!(
        subscription_event(None, "sub_1", t(10)),
        Err(Ignore::NoSubscriptionRow)
    );
    // Payment outcomes of another subscription's invoice leave the status alone.
    let d = invoice(
        EventKind::InvoicePaymentFailed,
        None,
        Some("sub_old"),
        t(10),
        None,
        Some(&s),
    )
    .unwrap();
    assert_eq!(d.payment, Payment::Nothing);
}

#[test]
fn checkout_links_unless_another_subscription_lives() {
    assert_eq!(checkout(None, Some("sub_1")), Ok(()));
    assert_eq!(checkout(Some(&stored(Active)), Some("sub_1")), Ok(()));
    assert_eq!(
        checkout(Some(&stored(Active)), Some("sub_2")),
        Err(Ignore::OtherLiveSubscription)
    );
    assert_eq!(checkout(Some(&stored(Canceled)), Some("sub_2")), Ok(()));
}

#[test]
fn final_invoices_never_go_back_and_stale_ones_are_kept() {
    let paid = StoredInvoice {
        same_tenant: true,
        status: InvoiceStatus::Paid,
        stripe_updated_at: Some(t(0)),
    };
    let d = invoice(
        EventKind::InvoiceFinalized,
        Some("open"),
        None,
        t(10),
        Some(&paid),
        None,
    )
    .unwrap();
    assert_eq!(d.invoice, None);
    let d = invoice(
        EventKind::InvoiceVoided,
        Some("void"),
        None,
        t(10),
        Some(&paid),
        None,
    )
    .unwrap();
    assert_eq!(d.invoice, Some(InvoiceStatus::Void));
    let open = StoredInvoice {
        status: InvoiceStatus::Open,
        stripe_updated_at: Some(t(20)),
        ..paid.clone()
    };
    let d = invoice(
        EventKind::InvoicePaid,
        Some("paid"),
        None,
        t(10),
        Some(&open),
        None,
    )
    .unwrap();
    assert_eq!(d.invoice, None, "older than the stored invoice");
    let theirs = StoredInvoice {
        same_tenant: false,
        ..paid
    };
    assert_eq!(
        invoice(
            EventKind::InvoicePaid,
            None,
            None,
            t(10),
            Some(&theirs),
            None
        ),
        Err(Ignore::InvoiceOfAnotherCustomer)
    );
    assert_eq!(
        invoice_status(EventKind::InvoiceCreated, Some("draft")),
        InvoiceStatus::Draft
    );
    assert_eq!(
        invoice_status(EventKind::InvoiceFinalized, None),
        InvoiceStatus::Open
    );
    assert_eq!(
        invoice_status(EventKind::InvoiceFinalized, Some("uncollectible")),
        InvoiceStatus::Uncollectible
    );
}

#[test]
fn a_newer_payment_outcome_holds_against_an_older_subscription_state() {
    // Payment failed at t=20; a subscription update created at t=10 arrives late: still PAST_DUE.
    let s = stored(Active);
    let failed = step(&s, EventKind::InvoicePaymentFailed, "", t(20));
    assert_eq!(failed.status, PastDue);
    let m = mirror(&failed, "active", false, t(15));
    assert_eq!(m.status, PastDue);
    assert!(m.grace_period_end.is_some());
    // Deletion always ends it.
    assert_eq!(mirror(&failed, "active", true, t(15)).status, Canceled);
    assert!(mirror(&failed, "active", true, t(15)).ends);
}
