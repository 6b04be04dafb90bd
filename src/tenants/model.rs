//! Tenant rows and the validated newtypes of tenant input (name, slug, domain).

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

use crate::db::schema::{tenant_domain_claims, tenants};
use crate::error::AppError;
use crate::ids::{PlanId, TenantId};

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = tenants, check_for_backend(diesel::pg::Pg))]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
    pub domain: Option<String>,
    pub status: TenantStatus,
    pub plan_id: PlanId,
    pub owner_id: Option<String>,
    pub region: String,
    pub settings: serde_json::Value,
    pub stripe_customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub suspend_reason: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Filters of the admin tenant list.
#[derive(Default, Clone)]
pub struct ListFilter {
    pub statuses: Vec<TenantStatus>,
    pub plan_slug: Option<String>,
    /// Case-insensitive substring of name or slug.
    pub search: Option<String>,
}

/// A tenant's claim on a custom domain, waiting for its DNS proof (see `tenants::domains`).
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = tenant_domain_claims, check_for_backend(diesel::pg::Pg))]
pub struct DomainClaim {
    pub tenant_id: TenantId,
    pub domain: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// A tenant to insert: its name, slug and domain were validated by their types' `parse` and
/// stay typed down to the SQL boundary (their `ToSql`).
#[derive(Insertable, Debug)]
#[diesel(table_name = tenants)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: TenantName,
    pub slug: TenantSlug,
    pub domain: Option<TenantDomain>,
    pub status: TenantStatus,
    pub plan_id: PlanId,
    pub owner_id: Option<String>,
    pub region: String,
    pub settings: serde_json::Value,
}

// A tenant's lifecycle state, stored as text (`ACTIVE`, `SUSPENDED`, `DELETED`). Any other
// text in the database fails to load (an error, never read as ACTIVE). (Not a doc comment: it
// would become the enum's description in schema.graphql.)
#[derive(
    async_graphql::Enum,
    Serialize,
    Deserialize,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[diesel(sql_type = Text)]
pub enum TenantStatus {
    Active,
    Suspended,
    Deleted,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "ACTIVE",
            TenantStatus::Suspended => "SUSPENDED",
            TenantStatus::Deleted => "DELETED",
        }
    }

    /// The status stored as `s`; `None` for any other text.
    pub fn parse(s: &str) -> Option<TenantStatus> {
        match s {
            "ACTIVE" => Some(TenantStatus::Active),
            "SUSPENDED" => Some(TenantStatus::Suspended),
            "DELETED" => Some(TenantStatus::Deleted),
            _ => None,
        }
    }
}

/// The validated text types are written as their text (the store's SQL boundary).
macro_rules! text_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql<Text, Pg> for $t {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
            }
        }
    )*};
}
text_to_sql!(TenantStatus, TenantName, TenantSlug, TenantDomain);

impl FromSql<Text, Pg> for TenantStatus {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        TenantStatus::parse(&text).ok_or_else(|| format!("unknown tenant status {text:?}").into())
    }
}

/// `[a-z0-9-]`, 1..=50, no leading/trailing hyphen.
#[derive(diesel::expression::AsExpression, Debug, Clone, PartialEq, Eq)]
#[diesel(sql_type = Text)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let s = raw.trim();
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if s.is_empty() || s.len() > 50 || !ok_chars || s.starts_with('-') || s.ends_with('-') {
            return Err(AppError::bad_input(
                "slug",
                "slug must be 1-50 characters of a-z, 0-9 and '-', not starting or ending with '-'",
            ));
        }
        Ok(TenantSlug(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[derive(diesel::expression::AsExpression, Debug, Clone, PartialEq, Eq)]
#[diesel(sql_type = Text)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let s = raw.trim();
        let len = s.chars().count();
        if len == 0 || len > 100 {
            return Err(AppError::bad_input("name", "name must be 1-100 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(AppError::bad_input(
                "name",
                "name must not contain control characters",
            ));
        }
        Ok(TenantName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A custom domain: lower-case host name, labels of 1..=63 `[a-z0-9-]`, at least two labels.
#[derive(diesel::expression::AsExpression, Debug, Clone, PartialEq, Eq)]
#[diesel(sql_type = Text)]
pub struct TenantDomain(String);

impl TenantDomain {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let s = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = s.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if s.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(AppError::bad_input(
                "domain",
                "domain must be a host name such as app.example.com",
            ));
        }
        Ok(TenantDomain(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_text_is_refused() {
        for s in [
            TenantStatus::Active,
            TenantStatus::Suspended,
            TenantStatus::Deleted,
        ] {
            assert_eq!(TenantStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(TenantStatus::parse("active"), None);
        assert_eq!(TenantStatus::parse("ARCHIVED"), None);
    }

    #[test]
    fn slugs() {
        assert!(TenantSlug::parse("acme-corp-2").is_ok());
        for bad in ["", "Acme", "a_b", "-a", "a-", "é", &"a".repeat(51)] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_and_domains() {
        assert!(TenantName::parse(&"n".repeat(100)).is_ok());
        assert!(TenantName::parse(&"n".repeat(101)).is_err());
        assert!(TenantName::parse("  ").is_err());
        assert_eq!(
            TenantDomain::parse("App.Example.COM.")
                .unwrap()
                .into_inner(),
            "app.example.com"
        );
        for bad in ["localhost", "a..b", "-a.com", "a b.com"] {
            assert!(TenantDomain::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
