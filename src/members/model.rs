//! Member and invitation rows, roles and statuses.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::schema::{invitations, members};
use crate::db::text_enum::text_enum;
use crate::ids::TenantId;

text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum MemberRole {
        Owner = "OWNER",
        Admin = "ADMIN",
        Member = "MEMBER",
        Viewer = "VIEWER",
    }
);

impl MemberRole {
    /// The API role a member of this role acts with: owners and admins administer the tenant,
    /// members and viewers use it.
    pub fn api_role(self) -> Role {
        match self {
            MemberRole::Owner | MemberRole::Admin => Role::TenantAdmin,
            MemberRole::Member | MemberRole::Viewer => Role::TenantMember,
        }
    }
}

// A member's status. `REMOVED` is stored (the removed person's tokens are refused) but never
// shown: the GraphQL enum has the three of SPEC §11.
text_enum!(
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum StoredStatus {
        Invited = "INVITED",
        Active = "ACTIVE",
        Disabled = "DISABLED",
        Removed = "REMOVED",
    }
);

#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Invited,
    Active,
    Disabled,
}

impl StoredStatus {
    pub fn shown(self) -> MemberStatus {
        match self {
            StoredStatus::Invited => MemberStatus::Invited,
            StoredStatus::Active => MemberStatus::Active,
            StoredStatus::Disabled | StoredStatus::Removed => MemberStatus::Disabled,
        }
    }
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = members, check_for_backend(diesel::pg::Pg))]
pub struct MemberRow {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub role: MemberRole,
    pub status: StoredStatus,
    pub invited_by: Option<String>,
    pub joined_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum InvitationStatus {
        Pending = "PENDING",
        Accepted = "ACCEPTED",
        Revoked = "REVOKED",
        Expired = "EXPIRED",
    }
);

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = invitations, check_for_backend(diesel::pg::Pg))]
pub struct InvitationRow {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub member_id: Uuid,
    pub email: String,
    pub role: MemberRole,
    pub status: InvitationStatus,
    pub token_hash: String,
    pub invited_by: String,
    pub expires_at: DateTime<Utc>,
    pub accepted_by: Option<String>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl InvitationRow {
    /// The status as of `now`: a pending invitation past its expiry is EXPIRED.
    pub fn status_at(&self, now: DateTime<Utc>) -> InvitationStatus {
        if self.status == InvitationStatus::Pending && self.expires_at <= now {
            InvitationStatus::Expired
        } else {
            self.status
        }
    }
}

/// The filter of `Tenant.members`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub role: Option<MemberRole>,
    pub status: Option<MemberStatus>,
}

pub fn stored(s: MemberStatus) -> StoredStatus {
    match s {
        MemberStatus::Invited => StoredStatus::Invited,
        MemberStatus::Active => StoredStatus::Active,
        MemberStatus::Disabled => StoredStatus::Disabled,
    }
}

/// Invitations are valid this long.
pub const INVITATION_DAYS: i64 = 7;

/// An e-mail address as we keep it: trimmed, lower case, 3-254 characters, one `@` with
/// something on each side, no whitespace or control characters.
pub fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = (3..=254).contains(&e.len())
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_or_refused() {
        assert_eq!(
            normalize_email("  Ada@Example.COM "),
            Some("ada@example.com".into())
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a da@x.io",
            "a@b@c.io",
            "ada@.io",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn roles_and_statuses_round_trip() {
        crate::db::text_enum::testing::assert_round_trip!(MemberRole, "GUEST");
        crate::db::text_enum::testing::assert_round_trip!(StoredStatus, "GONE");
        crate::db::text_enum::testing::assert_round_trip!(InvitationStatus, "LOST");
    }
}
