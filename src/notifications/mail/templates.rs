//! The words of each event's mail, from its outbox `data` (the same JSON webhooks carry). A
//! field missing or of another shape reads as "unknown" rather than failing the mail: the data
//! was written by an older or newer version, and the tenant should still be told. Plain text
//! only; `layout` escapes and frames it.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::layout::Content;
use crate::notifications::outbox::EventType;

const UNKNOWN: &str = "unknown";

/// What `event` says, read from its `data`.
pub fn content(event: EventType, data: &Value) -> Content {
    let d = Data(data);
    match event {
        EventType::QuotaThresholdReached => {
            let resource = d.text("resource");
            let threshold = d.text("threshold");
            Content {
                subject: format!("Usage of {resource} reached {threshold}% of the limit"),
                heading: format!("Usage of {resource} reached {threshold}% of the limit"),
                paragraphs: vec![
                    format!(
                        "Your {resource} usage is at {}% of the limit of your plan for the \
                         current period: {} of {}.",
                        d.text("percentUsed"),
                        d.text("used"),
                        d.text("limit")
                    ),
                    "A hard quota refuses usage beyond its limit; a higher plan raises it.".into(),
                ],
                facts: vec![
                    ("Resource", resource),
                    ("Threshold", format!("{threshold}%")),
                    ("Used", d.text("used")),
                    ("Limit", d.text("limit")),
                    ("Period start", d.time("periodStart")),
                ],
            }
        }
        EventType::PlanChanged => {
            let (from, to) = (d.text("fromPlan"), d.text("toPlan"));
            Content {
                subject: format!("Your plan changed to {to}"),
                heading: format!("Your plan changed from {from} to {to}"),
                paragraphs: vec![format!(
                    "The features and quotas of the {to} plan apply from now on."
                )],
                facts: vec![
                    ("Previous plan", from),
                    ("New plan", to),
                    ("Billing cycle", d.text("billingCycle")),
                ],
            }
        }
        EventType::TrialEnding => {
            let (plan, end) = (d.text("plan"), d.time("trialEnd"));
            Content {
                subject: format!("Your {plan} trial ends on {end}"),
                heading: format!("Your {plan} trial ends soon"),
                paragraphs: vec![
                    format!("The trial of the {plan} plan ends on {end}."),
                    "To keep the plan, choose it with a payment method before then; \
                     otherwise the tenant returns to the free plan when the trial ends."
                        .into(),
                ],
                facts: vec![("Plan", plan), ("Trial ends", end)],
            }
        }
        EventType::PaymentFailed => Content {
            subject: "A payment failed".into(),
            heading: "A payment for your subscription failed".into(),
            paragraphs: vec![
                "Your payment provider could not collect the latest invoice.".into(),
                "Please update the payment method. If payment does not succeed before the \
                 grace period ends, the tenant is suspended."
                    .into(),
            ],
            facts: vec![
                ("Failed at", d.time("failedAt")),
                ("Subscription status", d.text("subscriptionStatus")),
            ],
        },
        EventType::TenantSuspended => {
            let reason = d.opt_text("reason");
            let mut paragraphs = vec![
                "The tenant is suspended: its users and API keys can no longer make changes."
                    .into(),
            ];
            if reason.is_none() {
                paragraphs.push("No reason was given.".into());
            }
            Content {
                subject: "Your tenant was suspended".into(),
                heading: "Your tenant was suspended".into(),
                paragraphs,
                facts: reason.map(|r| ("Reason", r)).into_iter().collect(),
            }
        }
        EventType::TenantReactivated => Content {
            subject: "Your tenant is active again".into(),
            heading: "Your tenant is active again".into(),
            paragraphs: vec!["The suspension was lifted; everything works as before.".into()],
            facts: vec![],
        },
        EventType::MemberInvited => {
            let (email, role) = (d.text("email"), d.text("role"));
            Content {
                subject: format!("{email} was invited as {role}"),
                heading: format!("{email} was invited as {role}"),
                paragraphs: vec![
                    "A new member was invited to the tenant. The invitation link was given to \
                     whoever invited them; this mail is a notice, it cannot be used to join."
                        .into(),
                    "If you did not expect this invitation, revoke it.".into(),
                ],
                facts: vec![
                    ("Invited", email),
                    ("Role", role),
                    ("Invited by", d.text("invitedBy")),
                    ("Expires", d.time("expiresAt")),
                ],
            }
        }
        EventType::EndpointDisabled => {
            let url = d.text("url");
            Content {
                subject: "A webhook endpoint was disabled".into(),
                heading: "A webhook endpoint was disabled".into(),
                paragraphs: vec![
                    format!(
                        "Deliveries to {url} kept failing, so the endpoint was disabled and \
                         receives no more events."
                    ),
                    "Fix the receiver, then enable the endpoint again.".into(),
                ],
                facts: vec![
                    ("Endpoint", url),
                    ("Endpoint id", d.text("endpointId")),
                    ("Last error", d.text("lastError")),
                ],
            }
        }
    }
}

/// Reading `data` leniently.
struct Data<'a>(&'a Value);

impl Data<'_> {
    fn opt_text(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn text(&self, key: &str) -> String {
        self.opt_text(key).unwrap_or_else(|| UNKNOWN.into())
    }

    /// An RFC 3339 time as `2026-12-05 14:00 UTC`; any other text as it is.
    fn time(&self, key: &str) -> String {
        let raw = self.text(key);
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| {
                t.with_timezone(&Utc)
                    .format("%Y-%m-%d %H:%M UTC")
                    .to_string()
            })
            .unwrap_or(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_event_has_words_and_reads_its_data() {
        let q = content(
            EventType::QuotaThresholdReached,
            &json!({ "resource": "storage", "threshold": 90, "used": 9, "limit": 10,
                     "percentUsed": 90.0, "periodStart": "2026-12-01T00:00:00Z" }),
        );
        assert_eq!(q.subject, "Usage of storage reached 90% of the limit");
        assert!(q.paragraphs[0].contains("90.0% of the limit"));
        assert!(q
            .facts
            .contains(&("Period start", "2026-12-01 00:00 UTC".into())));
        let t = content(
            EventType::TrialEnding,
            &json!({ "trialEnd": "2026-12-08T10:30:00.123+00:00", "plan": "professional" }),
        );
        assert_eq!(
            t.subject,
            "Your professional trial ends on 2026-12-08 10:30 UTC"
        );
        let s = content(
            EventType::TenantSuspended,
            &json!({ "status": "SUSPENDED", "reason": "NONPAYMENT" }),
        );
        assert_eq!(s.facts, vec![("Reason", "NONPAYMENT".to_string())]);
        // Missing or odd data still makes a mail.
        for event in EventType::PUBLIC
            .into_iter()
            .chain([EventType::EndpointDisabled])
        {
            let c = content(event, &json!({ "threshold": [1], "reason": null }));
            assert!(
                !c.subject.is_empty() && !c.paragraphs.is_empty(),
                "{event:?}"
            );
        }
        let m = content(EventType::MemberInvited, &json!({}));
        assert_eq!(m.subject, "unknown was invited as unknown");
    }
}
