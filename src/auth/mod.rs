//! Who is calling: JWT verification ([`jwt`]), roles, and which tenant a request is scoped to
//! ([`resolve`]). Produces a [`Caller`] and an optional tenant; never touches business rules.

pub mod jwks;
pub mod jwt;
pub mod remembered;
pub mod resolve;

/// The verifier as resolution takes it.
pub type JwtVerifierRef<'a> = &'a jwt::JwtVerifier;

use serde::{Deserialize, Serialize};

use crate::db::Scope;
use crate::ids::TenantId;

#[derive(async_graphql::Enum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    PlatformAdmin,
    TenantAdmin,
    TenantMember,
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::TenantMember => 1,
            Role::TenantAdmin => 2,
            Role::PlatformAdmin => 3,
        }
    }

    /// Whether this role has at least the rights of `required`.
    pub fn satisfies(self, required: Role) -> bool {
        self.rank() >= required.rank()
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "platform_admin" => Some(Role::PlatformAdmin),
            "tenant_admin" => Some(Role::TenantAdmin),
            "tenant_member" => Some(Role::TenantMember),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::TenantAdmin => "tenant_admin",
            Role::TenantMember => "tenant_member",
        }
    }
}

/// An authenticated user, from verified claims.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
    pub tenant_id: Option<TenantId>,
    /// When the token expires (unix seconds).
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    User(Principal),
    /// A tenant's API key (`Bearer tnt_...`, see `api_keys::auth`): its tenant and role;
    /// `user_id` is `apikey:<key id>`.
    ApiKey(Principal),
}

impl Caller {
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::User(p) | Caller::ApiKey(p) => Some(p),
            Caller::Anonymous => None,
        }
    }

    pub fn is_platform_admin(&self) -> bool {
        matches!(self, Caller::User(p) if p.role == Role::PlatformAdmin)
    }
}

/// Who did something, for the audit log (SPEC §4 `actorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorType {
    User,
    Admin,
    Webhook,
    System,
    Service,
    /// A caller without credentials. Never platform, never a tenant: it reads only what is
    /// public (plans, a Host's public branding) and may not write.
    Anonymous,
    /// A tenant's API key: a tenant actor with the key's role (never platform).
    ApiKey,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "USER",
            ActorType::Admin => "ADMIN",
            ActorType::Webhook => "WEBHOOK",
            ActorType::System => "SYSTEM",
            ActorType::Service => "SERVICE",
            ActorType::Anonymous => "ANONYMOUS",
            ActorType::ApiKey => "API_KEY",
        }
    }
}

/// The acting party of a unit of work: who (for audit and rules) and the request it came with.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorType,
    pub id: Option<String>,
    pub role: Option<Role>,
    /// The tenant a tenant user belongs to; `None` for platform actors.
    pub tenant_id: Option<TenantId>,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Actor {
            kind: ActorType::System,
            id: None,
            role: None,
            tenant_id: None,
            request_id: None,
        }
    }

    /// A Stripe event's effects; the actor id is the event id.
    pub fn webhook(event_id: &str) -> Self {
        Actor {
            kind: ActorType::Webhook,
            id: Some(event_id.to_owned()),
            ..Actor::system()
        }
    }

    pub fn from_caller(caller: &Caller, request_id: Option<String>) -> Self {
        match caller {
            Caller::Anonymous => Actor {
                kind: ActorType::Anonymous,
                request_id,
                ..Actor::system()
            },
            Caller::User(p) => Actor {
                kind: if p.role == Role::PlatformAdmin {
                    ActorType::Admin
                } else {
                    ActorType::User
                },
                id: Some(p.user_id.clone()),
                role: Some(p.role),
                tenant_id: if p.role == Role::PlatformAdmin {
                    None
                } else {
                    p.tenant_id
                },
                request_id,
            },
            Caller::ApiKey(p) => Actor {
                kind: ActorType::ApiKey,
                id: Some(p.user_id.clone()),
                role: Some(p.role),
                tenant_id: p.tenant_id,
                request_id,
            },
        }
    }

    /// Platform actors (admins, the system, services, Stripe's webhook) reach every tenant
    /// through the audited bypass. Anonymous callers and tenant users never do.
    pub fn is_platform(&self) -> bool {
        matches!(
            self.kind,
            ActorType::Admin | ActorType::System | ActorType::Service | ActorType::Webhook
        )
    }

    /// Whether the actor has at least `role`'s rights: platform actors (admins, the system,
    /// services, Stripe's webhook) every role; tenant users their token's role and the ones
    /// below it; anonymous callers none.
    pub fn has(&self, role: Role) -> bool {
        self.is_platform() || self.role.is_some_and(|r| r.satisfies(role))
    }

    /// The one role check of services and guards: `FORBIDDEN` ("requires role <role>") unless
    /// [`Actor::has`] `role`.
    pub fn require(&self, role: Role) -> crate::error::AppResult<()> {
        if self.has(role) {
            Ok(())
        } else {
            Err(crate::error::AppError::forbidden(format!(
                "requires role {}",
                role.as_str()
            )))
        }
    }

    /// The scope for reading or writing `tenant_id`'s rows: platform actors use the explicit
    /// bypass, tenant users their own tenant only (RLS then hides any other tenant), anyone
    /// else no tenant at all (RLS hides every tenant-owned row).
    pub fn scope_for(&self, reason: &'static str, _tenant_id: TenantId) -> Scope {
        match (self.is_platform(), self.tenant_id) {
            (true, _) => Scope::Platform(reason),
            (false, Some(own)) => Scope::Tenant(own),
            (false, None) => Scope::Anonymous,
        }
    }
}

/// Refuses a tenant user's attempt to reach another tenant's data: counted, logged, and
/// answered exactly like a missing row so ids cannot be probed.
pub fn cross_tenant_denied(
    actor: &Actor,
    target: TenantId,
    what: &'static str,
) -> crate::error::AppError {
    metrics::counter!("tenantry_cross_tenant_attempts_total", "resource" => what).increment(1);
    tracing::warn!(
        actor_tenant = ?actor.tenant_id,
        actor_id = ?actor.id,
        target = %target,
        resource = what,
        "cross-tenant access refused"
    );
    crate::error::AppError::not_found(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anonymous_caller_is_never_platform_and_reaches_no_tenant() {
        let actor = Actor::from_caller(&Caller::Anonymous, Some("r".into()));
        assert_eq!(actor.kind, ActorType::Anonymous);
        assert!(!actor.is_platform());
        assert!(matches!(
            actor.scope_for("x", TenantId::now_v7()),
            Scope::Anonymous
        ));
        assert!(Actor::system().is_platform());
    }

    #[test]
    fn require_checks_the_role_ladder_and_names_the_missing_role() {
        let user = |role| {
            let p = Principal {
                user_id: "u".into(),
                role,
                tenant_id: Some(TenantId::now_v7()),
                expires_at: 0,
            };
            Actor::from_caller(&Caller::User(p), None)
        };
        let member = user(Role::TenantMember);
        assert!(member.require(Role::TenantMember).is_ok());
        let err = member.require(Role::TenantAdmin).unwrap_err();
        assert_eq!(err.to_string(), "requires role tenant_admin");
        assert!(user(Role::TenantAdmin).require(Role::TenantAdmin).is_ok());
        assert!(user(Role::TenantAdmin)
            .require(Role::PlatformAdmin)
            .is_err());
        assert!(user(Role::PlatformAdmin)
            .require(Role::PlatformAdmin)
            .is_ok());
        assert!(Actor::system().require(Role::PlatformAdmin).is_ok());
        let anonymous = Actor::from_caller(&Caller::Anonymous, None);
        assert!(anonymous.require(Role::TenantMember).is_err());
    }
}
