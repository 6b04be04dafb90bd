//! Who gets a tenant's mail and how it looks, read in the caller's transaction (the delivery
//! worker's, platform scope): the tenant, its switches (`notifications.email_enabled`,
//! `notifications.quota_alert_emails`), its branding, and its ACTIVE owners and admins with an
//! e-mail address. Reads only; the decision what to send is `mail::deliver`'s.

use diesel::prelude::*;
use diesel::QueryResult;
use diesel_async::RunQueryDsl;
use lettre::Address;
use serde_json::Value;

use super::layout::Branding;
use crate::configs::service::tenant_config_in;
use crate::db::schema::members;
use crate::db::Conn;
use crate::ids::TenantId;
use crate::members::model::{MemberRole, StoredStatus};
use crate::tenants::model::TenantRow;

/// What `deliver` needs to know about the tenant.
pub struct Audience {
    pub tenant: TenantRow,
    pub email_enabled: bool,
    pub quota_alert_emails: bool,
    pub branding: Branding,
    /// Sorted, one per address (compared without case).
    pub recipients: Vec<Address>,
}

/// `None` when the tenant is gone (purged).
pub async fn audience(
    c: &mut Conn,
    tenant_id: TenantId,
    secret: Option<&[u8; 32]>,
) -> QueryResult<Option<Audience>> {
    let Some(tenant) = crate::tenants::store::find(c, tenant_id).await? else {
        return Ok(None);
    };
    let config = tenant_config_in(c, tenant_id).await?;
    let switch = |key: &str| {
        // A switch that is not a boolean (an older JSON value) counts as on, like its default.
        !matches!(
            config.value("notifications", key, secret),
            Some(Value::Bool(false))
        )
    };
    let (email_enabled, quota_alert_emails) =
        (switch("email_enabled"), switch("quota_alert_emails"));
    // Branding is the tenant's only while `custom_branding` is on (as for reading and writing
    // it through the API); otherwise the defaults.
    let branded =
        crate::features::service::enabled_in(c, tenant.id, tenant.plan_id, "custom_branding")
            .await?;
    let branding_value = |key: &str| {
        let v = if branded {
            config.value("branding", key, secret)
        } else {
            config.default_value("branding", key)
        };
        v.and_then(|v| v.as_str().map(str::to_owned))
    };
    let branding = Branding::new(
        &tenant.name,
        branding_value("primary_color").as_deref(),
        branding_value("logo_url").as_deref(),
    );
    let recipients = recipients(c, tenant_id).await?;
    Ok(Some(Audience {
        tenant,
        email_enabled,
        quota_alert_emails,
        branding,
        recipients,
    }))
}

/// ACTIVE owners and admins with an e-mail address, deduplicated without case; an address
/// lettre cannot use is left out (and logged), not allowed to fail the others' mail.
async fn recipients(c: &mut Conn, tenant_id: TenantId) -> QueryResult<Vec<Address>> {
    let emails: Vec<Option<String>> = members::table
        .filter(members::tenant_id.eq(tenant_id))
        .filter(members::status.eq(StoredStatus::Active))
        .filter(members::role.eq_any([MemberRole::Owner, MemberRole::Admin]))
        .filter(members::email.is_not_null())
        .select(members::email)
        .load(c)
        .await?;
    Ok(dedupe(tenant_id, emails.into_iter().flatten()))
}

fn dedupe(tenant_id: TenantId, emails: impl Iterator<Item = String>) -> Vec<Address> {
    let mut seen = std::collections::BTreeMap::new();
    for email in emails {
        let key = email.trim().to_lowercase();
        if seen.contains_key(&key) {
            continue;
        }
        match email.trim().parse::<Address>() {
            Ok(a) => {
                seen.insert(key, a);
            }
            Err(_) => {
                tracing::warn!(tenant_id = %tenant_id, "a member's e-mail address cannot be used for mail; left out")
            }
        }
    }
    seen.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_deduplicated_without_case_and_bad_ones_left_out() {
        let got = dedupe(
            TenantId::from(uuid::Uuid::nil()),
            [
                "Owner@Example.com",
                "admin@example.com",
                "owner@example.com",
                "not an address",
            ]
            .into_iter()
            .map(String::from),
        );
        let got: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(got, vec!["admin@example.com", "Owner@Example.com"]);
    }
}
