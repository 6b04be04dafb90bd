//! Members and invitations (issue 15, SPEC §11): invite → accept → the member appears with its
//! role; tokens are single-use and tenant-bound; the `users` quota admits exactly the remaining
//! seats under 64 racing invitations; a removed member is FORBIDDEN on a second instance at
//! once and its open socket closes; roles come from the membership (the JWT may only narrow);
//! a tenant always keeps an OWNER; `MEMBERSHIP_ENFORCED=false` is claim-only.

use std::time::Duration;

use serde_json::{json, Value};
use tenantry::auth::Role;
use uuid::Uuid;

use crate::common::ws::{next_json, open};
use crate::common::{count, within_a_second, TestApp};

const INVITE: &str = "mutation($i: InviteMemberInput!) {
    inviteMember(input: $i) { id email role status expiresAt token acceptUrl } }";
const ACCEPT: &str = "mutation($t: String!) {
    acceptInvitation(token: $t) { id userId email role status joinedAt invitedBy } }";
const MEMBERS: &str =
    "{ tenant { members(first: 50) { totalCount nodes { userId email role status joinedAt } } } }";
const REMOVE: &str = "mutation($u: String!) { removeMember(userId: $u) }";
const ROLE: &str = "mutation($u: String!, $r: MemberRole!) { updateMemberRole(userId: $u, role: $r) { userId role } }";

/// A token for `sub` as a user of `tenant` with `role`.
fn user(app: &TestApp, tenant: Uuid, sub: &str, role: Role) -> String {
    tenantry::auth::jwt::issue(
        &app.app.settings,
        role,
        Some(tenant.into()),
        sub,
        Duration::from_secs(3600),
    )
    .unwrap()
}

async fn invite(app: &TestApp, token: &str, email: &str, role: &str) -> crate::common::Gql {
    app.gql(
        Some(token),
        INVITE,
        json!({ "i": { "email": email, "role": role } }),
    )
    .await
}

/// Invites `email` and accepts as `sub`: the new member's token.
async fn join(app: &TestApp, tenant: Uuid, admin: &str, sub: &str, role: &str) -> String {
    let inv = invite(app, admin, &format!("{sub}@example.com"), role).await;
    let token = inv.ok()["inviteMember"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwt = user(app, tenant, sub, Role::TenantAdmin);
    app.gql(Some(&jwt), ACCEPT, json!({ "t": token }))
        .await
        .ok();
    jwt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_accepted_once_and_the_member_appears_with_its_role() {
    let app = TestApp::spawn().await;
    let t = app.tenant().owner("owner-1").create().await;
    let owner = user(&app, t.id, "owner-1", Role::TenantAdmin);

    let inv = invite(&app, &owner, "  Ada@Example.com ", "ADMIN").await;
    let inv = inv.ok()["inviteMember"].clone();
    assert_eq!(inv["email"], "ada@example.com");
    assert_eq!(
        (&inv["role"], &inv["status"]),
        (&json!("ADMIN"), &json!("PENDING"))
    );
    let token = inv["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 43, "256 bits: {token}");
    assert!(inv["acceptUrl"].as_str().unwrap().contains(&token));
    let mut c = app.db.superuser().await;
    let plain = format!("select count(*) as n from invitations where token_hash = '{token}'");
    assert_eq!(count(&mut c, &plain).await, 0, "stored hashed");

    // Listed as INVITED; the owner from createTenant's ownerId is there too.
    let listed = app.gql(Some(&owner), MEMBERS, json!({})).await;
    let listed = listed.ok()["tenant"]["members"].clone();
    assert_eq!(listed["totalCount"], 2);
    assert_eq!(listed["nodes"][0]["userId"], "owner-1");
    assert_eq!(listed["nodes"][0]["role"], "OWNER");
    assert_eq!(listed["nodes"][1]["status"], "INVITED");
    assert!(!listed.to_string().contains(&token));

    let ada = user(&app, t.id, "ada-sub", Role::TenantMember);
    let accepted = app.gql(Some(&ada), ACCEPT, json!({ "t": token })).await;
    let m = accepted.ok()["acceptInvitation"].clone();
    assert_eq!(m["userId"], "ada-sub");
    assert_eq!(
        (&m["role"], &m["status"]),
        (&json!("ADMIN"), &json!("ACTIVE"))
    );
    assert!(m["joinedAt"].is_string());
    assert_eq!(m["invitedBy"], "owner-1");
    let one = app
        .gql(
            Some(&owner),
            "{ tenant { member(userId: \"ada-sub\") { email role status } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        one.ok()["tenant"]["member"],
        json!({ "email": "ada@example.com", "role": "ADMIN", "status": "ACTIVE" })
    );

    // Single use: a second acceptance (by anyone) is CONFLICT.
    let again = user(&app, t.id, "someone-else", Role::TenantMember);
    let second = app.gql(Some(&again), ACCEPT, json!({ "t": token })).await;
    second.err("CONFLICT");

    // Another tenant's user cannot use it: NOT_FOUND, nothing bound.
    let other = app.tenant().create().await;
    let stranger = user(&app, other.id, "stranger", Role::TenantMember);
    let inv2 = invite(&app, &owner, "bob@example.com", "MEMBER").await;
    let token2 = inv2.ok()["inviteMember"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.gql(Some(&stranger), ACCEPT, json!({ "t": token2 }))
        .await
        .err("NOT_FOUND");

    // Revoked, then expired: BAD_USER_INPUT saying which.
    let id2 = inv2.ok()["inviteMember"]["id"].clone();
    let revoked = app
        .gql(
            Some(&owner),
            "mutation($id: ID!) { revokeInvitation(id: $id) { status token } }",
            json!({ "id": id2 }),
        )
        .await;
    assert_eq!(
        revoked.ok()["revokeInvitation"],
        json!({ "status": "REVOKED", "token": null })
    );
    let bob = user(&app, t.id, "bob-sub", Role::TenantMember);
    let e = app.gql(Some(&bob), ACCEPT, json!({ "t": token2 })).await;
    assert!(e.err("BAD_USER_INPUT")["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    let inv3 = invite(&app, &owner, "carol@example.com", "MEMBER").await;
    let token3 = inv3.ok()["inviteMember"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    use diesel_async::SimpleAsyncConnection;
    c.batch_execute("update invitations set expires_at = now() - interval '1 minute' where email = 'carol@example.com'")
        .await
        .unwrap();
    let carol = user(&app, t.id, "carol-sub", Role::TenantMember);
    let e = app.gql(Some(&carol), ACCEPT, json!({ "t": token3 })).await;
    assert!(e.err("BAD_USER_INPUT")["message"]
        .as_str()
        .unwrap()
        .contains("expired"));

    // Invitations and acceptances are audited, without the token.
    let audited = format!(
        "select count(*) as n from audit_logs where tenant_id = '{}' and entity_type = 'member' and action in ('INVITE', 'ACCEPT')",
        t.id
    );
    assert_eq!(count(&mut c, &audited).await, 4);
    let leaked = format!(
        "select count(*) as n from audit_logs where changes::text like '%{token}%' or metadata::text like '%{token}%'"
    );
    assert_eq!(count(&mut c, &leaked).await, 0);
    let event = format!("select count(*) as n from audit_logs where tenant_id = '{}' and metadata->>'event' = 'member.invited'", t.id);
    assert_eq!(count(&mut c, &event).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_racing_invitations_take_exactly_the_remaining_seats() {
    let app = TestApp::spawn().await;
    let t = app.tenant().owner("seat-owner").create().await;
    let admin = app.admin_token();
    // The owner holds one seat; a HARD limit of 6 leaves 5.
    app.gql(
        Some(&admin),
        "mutation($t: ID!) { setQuota(tenantId: $t, input: { resource: \"users\", limit: 6, enforcement: HARD }) { limit } }",
        json!({ "t": t.id }),
    )
    .await
    .ok();
    let owner = user(&app, t.id, "seat-owner", Role::TenantAdmin);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (base, client, owner) = (app.base.clone(), reqwest::Client::new(), owner.clone());
            tokio::spawn(async move {
                let resp = client
                    .post(format!("{base}/graphql"))
                    .bearer_auth(owner)
                    .json(&json!({ "query": INVITE, "variables": { "i": { "email": format!("p{i}@example.com"), "role": "MEMBER" } } }))
                    .send()
                    .await
                    .unwrap();
                resp.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    let mut refused = 0;
    for task in tasks {
        let v = task.await.unwrap();
        if v["data"]["inviteMember"]["token"].is_string() {
            admitted += 1;
        } else {
            assert_eq!(
                v["errors"][0]["extensions"]["code"], "QUOTA_EXCEEDED",
                "{v}"
            );
            refused += 1;
        }
    }
    assert_eq!((admitted, refused), (5, 59));
    let q = app
        .gql(
            Some(&owner),
            "{ tenant { quota(resource: \"users\") { used limit } } }",
            json!({}),
        )
        .await;
    assert_eq!(q.ok()["tenant"]["quota"], json!({ "used": 6, "limit": 6 }));
    let mut c = app.db.superuser().await;
    let rows = format!(
        "select count(*) as n from members where tenant_id = '{}' and status = 'INVITED'",
        t.id
    );
    assert_eq!(count(&mut c, &rows).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_forbidden_on_another_instance_at_once_and_its_socket_closes() {
    let app = TestApp::spawn().await;
    let b = app.second_instance().await;
    let t = app.tenant().owner("boss").create().await;
    let boss = user(&app, t.id, "boss", Role::TenantAdmin);
    let leaver = join(&app, t.id, &boss, "leaver", "MEMBER").await;
    let me = "{ me { role } tenant { slug } }";
    // Cached on B: it works there.
    let before = b.gql(Some(&leaver), me, json!({})).await;
    assert_eq!(
        before.ok()["me"]["role"],
        "TENANT_MEMBER",
        "narrowed to the membership"
    );
    let mut ws = open(&b, &leaver).await;

    app.gql(Some(&boss), REMOVE, json!({ "u": "leaver" }))
        .await
        .ok();
    within_a_second("the removal on the second instance", || async {
        let r = b.gql(Some(&leaver), me, json!({})).await;
        match r.code() {
            Some("FORBIDDEN") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let closed = loop {
        let m = next_json(&mut ws).await.expect("closed");
        if m.get("closed").is_some() {
            break m;
        }
    };
    assert_eq!(closed["closed"], 4403, "{closed}");
    // Gone from the list, and a stranger's token (unknown to the tenant) keeps the claim.
    let listed = app.gql(Some(&boss), MEMBERS, json!({})).await;
    assert!(!listed.ok().to_string().contains("leaver"));
    let stranger = user(&app, t.id, "idp-provisioned", Role::TenantMember);
    app.gql(Some(&stranger), me, json!({})).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_come_from_the_membership_and_a_tenant_keeps_an_owner() {
    let app = TestApp::spawn().await;
    let t = app.tenant().owner("founder").create().await;
    let founder = user(&app, t.id, "founder", Role::TenantAdmin);
    let viewer = join(&app, t.id, &founder, "viewer", "VIEWER").await;
    let admin = join(&app, t.id, &founder, "admin", "ADMIN").await;

    // The viewer's JWT says TENANT_ADMIN; the membership narrows it.
    app.gql(
        Some(&viewer),
        INVITE,
        json!({ "i": { "email": "x@example.com", "role": "MEMBER" } }),
    )
    .await
    .err("FORBIDDEN");
    // An admin may not grant OWNER, nor touch the owner.
    invite(&app, &admin, "boss@example.com", "OWNER")
        .await
        .err("FORBIDDEN");
    app.gql(Some(&admin), ROLE, json!({ "u": "viewer", "r": "OWNER" }))
        .await
        .err("FORBIDDEN");
    app.gql(Some(&admin), REMOVE, json!({ "u": "founder" }))
        .await
        .err("FORBIDDEN");
    // An admin manages the others.
    let changed = app
        .gql(Some(&admin), ROLE, json!({ "u": "viewer", "r": "MEMBER" }))
        .await;
    assert_eq!(changed.ok()["updateMemberRole"]["role"], "MEMBER");

    // The last owner cannot step down or be removed; transferring is explicit.
    app.gql(
        Some(&founder),
        ROLE,
        json!({ "u": "founder", "r": "ADMIN" }),
    )
    .await
    .err("CONFLICT");
    app.gql(Some(&founder), REMOVE, json!({ "u": "founder" }))
        .await
        .err("CONFLICT");
    app.gql(Some(&founder), ROLE, json!({ "u": "admin", "r": "OWNER" }))
        .await
        .ok();
    let stepped = app
        .gql(
            Some(&founder),
            ROLE,
            json!({ "u": "founder", "r": "ADMIN" }),
        )
        .await;
    assert_eq!(stepped.ok()["updateMemberRole"]["role"], "ADMIN");
    let owners = app
        .gql(
            Some(&admin),
            "{ tenant { members(filter: { role: OWNER }) { nodes { userId } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        owners.ok()["tenant"]["members"]["nodes"],
        json!([{ "userId": "admin" }])
    );
    app.gql(Some(&admin), ROLE, json!({ "u": "nobody", "r": "ADMIN" }))
        .await
        .err("NOT_FOUND");
    // Bad input.
    invite(&app, &admin, "not-an-address", "MEMBER")
        .await
        .err("BAD_USER_INPUT");
    invite(&app, &admin, "viewer@example.com", "MEMBER")
        .await
        .err("CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_may_not_manage_members_and_another_tenant_is_out_of_reach() {
    let app = TestApp::spawn().await;
    let a = app.tenant().owner("a-owner").create().await;
    let b = app.tenant().owner("b-owner").create().await;
    let mut c = app.db.superuser().await;
    let snapshot =
        "select (select count(*) from members) + (select count(*) from invitations) as n";
    let before = count(&mut c, snapshot).await;
    let a_member = user(&app, a.id, "a-member", Role::TenantMember);
    invite(&app, &a_member, "x@example.com", "MEMBER")
        .await
        .err("FORBIDDEN");
    let a_admin = user(&app, a.id, "a-admin", Role::TenantAdmin);
    for (q, vars) in [
        (INVITE, json!({ "i": { "tenantId": b.id, "email": "x@example.com", "role": "MEMBER" } })),
        ("mutation($t: ID!) { removeMember(tenantId: $t, userId: \"b-owner\") }", json!({ "t": b.id })),
        ("mutation($t: ID!) { updateMemberRole(tenantId: $t, userId: \"b-owner\", role: VIEWER) { role } }", json!({ "t": b.id })),
    ] {
        let r = app.gql(Some(&a_admin), q, vars).await;
        assert!(matches!(r.code(), Some("FORBIDDEN") | Some("NOT_FOUND")), "{q}");
    }
    // B's invitation id is unknown in A.
    let b_owner = user(&app, b.id, "b-owner", Role::TenantAdmin);
    let inv = invite(&app, &b_owner, "y@example.com", "MEMBER").await;
    let id = inv.ok()["inviteMember"]["id"].clone();
    app.gql(
        Some(&a_admin),
        "mutation($id: ID!) { revokeInvitation(id: $id) { status } }",
        json!({ "id": id }),
    )
    .await
    .err("NOT_FOUND");
    assert_eq!(count(&mut c, snapshot).await, before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_enforcement_the_claim_alone_decides() {
    let app = TestApp::spawn_with(|env| {
        env.insert("MEMBERSHIP_ENFORCED".into(), "false".into());
    })
    .await;
    let t = app.tenant().owner("chief").create().await;
    let chief = user(&app, t.id, "chief", Role::TenantAdmin);
    let gone = join(&app, t.id, &chief, "gone", "VIEWER").await;
    app.gql(Some(&chief), REMOVE, json!({ "u": "gone" }))
        .await
        .ok();
    let r = app.gql(Some(&gone), "{ me { role } }", json!({})).await;
    assert_eq!(r.ok()["me"]["role"], "TENANT_ADMIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_member_is_forbidden_frees_its_seat_and_can_come_back() {
    let app = TestApp::spawn().await;
    let t = app.tenant().owner("lead").create().await;
    let lead = user(&app, t.id, "lead", Role::TenantAdmin);
    let temp = join(&app, t.id, &lead, "temp", "MEMBER").await;
    let status = "mutation($u: String!, $s: MemberStatus!) { updateMemberStatus(userId: $u, status: $s) { userId status } }";
    let seats = "{ tenant { quota(resource: \"users\") { used } } }";
    let used = |v: &crate::common::Gql| v.ok()["tenant"]["quota"]["used"].clone();
    assert_eq!(used(&app.gql(Some(&lead), seats, json!({})).await), 2);

    let disabled = app
        .gql(Some(&lead), status, json!({ "u": "temp", "s": "DISABLED" }))
        .await;
    assert_eq!(
        disabled.ok()["updateMemberStatus"],
        json!({ "userId": "temp", "status": "DISABLED" })
    );
    app.gql(Some(&temp), "{ me { role } }", json!({}))
        .await
        .err("FORBIDDEN");
    assert_eq!(used(&app.gql(Some(&lead), seats, json!({})).await), 1);

    let back = app
        .gql(Some(&lead), status, json!({ "u": "temp", "s": "ACTIVE" }))
        .await;
    assert_eq!(back.ok()["updateMemberStatus"]["status"], "ACTIVE");
    app.gql(Some(&temp), "{ me { role } }", json!({}))
        .await
        .ok();
    assert_eq!(used(&app.gql(Some(&lead), seats, json!({})).await), 2);

    // The last owner cannot be disabled; INVITED is not a status one sets.
    app.gql(Some(&lead), status, json!({ "u": "lead", "s": "DISABLED" }))
        .await
        .err("CONFLICT");
    app.gql(Some(&lead), status, json!({ "u": "temp", "s": "INVITED" }))
        .await
        .err("BAD_USER_INPUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_members_socket_closes_and_a_removed_member_can_be_brought_back() {
    let app = TestApp::spawn().await;
    let b = app.second_instance().await;
    let t = app.tenant().owner("head").create().await;
    let head = user(&app, t.id, "head", Role::TenantAdmin);
    let deputy = join(&app, t.id, &head, "deputy", "ADMIN").await;
    let mut ws = open(&b, &deputy).await;
    // Demoted on A: the socket on B, opened as an admin, closes; HTTP answers as a member.
    app.gql(Some(&head), ROLE, json!({ "u": "deputy", "r": "VIEWER" }))
        .await
        .ok();
    let closed = loop {
        let m = next_json(&mut ws).await.expect("closed");
        if m.get("closed").is_some() {
            break m;
        }
    };
    assert_eq!(closed["closed"], 4403, "{closed}");
    within_a_second("the narrowed role on the second instance", || async {
        let r = b.gql(Some(&deputy), "{ me { role } }", json!({})).await;
        (r.ok()["me"]["role"] == "TENANT_MEMBER")
            .then_some(())
            .ok_or(r.ok().to_string())
    })
    .await;

    // Removed, then brought back by an admin: the same `sub` works again.
    app.gql(Some(&head), REMOVE, json!({ "u": "deputy" }))
        .await
        .ok();
    app.gql(Some(&deputy), "{ me { role } }", json!({}))
        .await
        .err("FORBIDDEN");
    let back = app
        .gql(
            Some(&head),
            "mutation { updateMemberStatus(userId: \"deputy\", status: ACTIVE) { status role } }",
            json!({}),
        )
        .await;
    assert_eq!(
        back.ok()["updateMemberStatus"],
        json!({ "status": "ACTIVE", "role": "VIEWER" })
    );
    app.gql(Some(&deputy), "{ me { role } }", json!({}))
        .await
        .ok();

    // A suspended tenant invites nobody, but may still remove.
    let admin = app.admin_token();
    app.gql(
        Some(&admin),
        "mutation($id: ID!) { suspendTenant(id: $id, reason: \"test\") { status } }",
        json!({ "id": t.id }),
    )
    .await
    .ok();
    invite(&app, &head, "late@example.com", "MEMBER")
        .await
        .err("TENANT_SUSPENDED");
    app.gql(Some(&head), REMOVE, json!({ "u": "deputy" }))
        .await
        .ok();
}
