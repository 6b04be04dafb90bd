//! Tenant resolution by Host and its cache: unknown names cost one query each and are then
//! remembered (briefly), a change drops only that tenant's entries, and a name that just became
//! a tenant resolves at once on every instance.

use crate::common::{statements, within_a_second, TestApp};
use serde_json::json;
use uuid::Uuid;

const PUBLIC: &str = "{ publicTenant { slug } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_hosts_cost_the_database_once_each_then_nothing() {
    let app = TestApp::spawn().await;
    let hosts: Vec<String> = (0..200)
        .map(|i| {
            let r = &Uuid::new_v4().simple().to_string()[..10];
            if i % 2 == 0 {
                format!("r{r}.tenantry.test")
            } else {
                format!("www.r{r}.example.org")
            }
        })
        .collect();
    let mut first = 0;
    for host in &hosts {
        let resp = app
            .gql_with(None, &[("host", host)], PUBLIC, json!({}))
            .await;
        assert!(resp.ok()["publicTenant"].is_null());
        first += statements(&resp);
    }
    assert!(first > 0, "the first look-ups query the database");
    // Repeats are answered from the negative cache: the database sees nothing.
    let mut again = 0;
    for host in &hosts {
        let resp = app
            .gql_with(None, &[("host", host)], PUBLIC, json!({}))
            .await;
        assert!(resp.ok()["publicTenant"].is_null());
        again += statements(&resp);
    }
    assert_eq!(again, 0, "repeated unknown hosts ran {again} statements");

    // Names that cannot be a tenant (bad slug characters, IPs, single labels) never query.
    for host in [
        "bad_slug.tenantry.test",
        "127.0.0.1",
        "localhost",
        "a..b.tenantry.test",
    ] {
        let resp = app
            .gql_with(None, &[("host", host)], PUBLIC, json!({}))
            .await;
        assert!(resp.ok()["publicTenant"].is_null());
        assert_eq!(statements(&resp), 0, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_change_keeps_other_tenants_cached() {
    let app = TestApp::spawn().await;
    let a = app.tenant().create().await;
    let b = app.tenant().create().await;
    let host_b = format!("{}.tenantry.test", b.slug);
    // Cached and settled: the bus echo of B's own creation may still drop the entry once, so
    // wait until a look-up costs nothing.
    let mut settled = false;
    for _ in 0..50 {
        let resp = app
            .gql_with(None, &[("host", &host_b)], PUBLIC, json!({}))
            .await;
        assert_eq!(resp.ok()["publicTenant"]["slug"], b.slug);
        if statements(&resp) == 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(settled, "B's resolution never came from the cache");
    app.gql(
        Some(&a.admin),
        "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"A2\" }) { name } }",
        json!({ "id": a.id.to_string() }),
    )
    .await
    .ok();
    // B's resolution survived A's change.
    let resp = app
        .gql_with(None, &[("host", &host_b)], PUBLIC, json!({}))
        .await;
    assert_eq!(resp.ok()["publicTenant"]["slug"], b.slug);
    assert_eq!(statements(&resp), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_or_changed_tenant_resolves_at_once_on_another_instance() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let admin = a.admin_token();
    let slug = format!("n{}", &Uuid::new_v4().simple().to_string()[..10]);
    let host = format!("{slug}.tenantry.test");
    let domain = format!("portal.{slug}.example.net");

    // B remembers both names as unknown.
    for h in [&host, &domain] {
        let resp = b.gql_with(None, &[("host", h)], PUBLIC, json!({})).await;
        assert!(resp.ok()["publicTenant"].is_null());
        let resp = b.gql_with(None, &[("host", h)], PUBLIC, json!({})).await;
        assert!(resp.ok()["publicTenant"].is_null());
        assert_eq!(statements(&resp), 0, "{h} is negatively cached");
    }

    // Created through A (by the operator, so the domain counts as verified).
    let t = a.tenant().slug(&slug).domain(&domain).create().await;
    for h in [&host, &domain] {
        within_a_second(h, || async {
            let resp = b.gql_with(None, &[("host", h)], PUBLIC, json!({})).await;
            match resp.body["data"]["publicTenant"]["slug"].as_str() {
                Some(s) if s == slug => Ok(()),
                _ => Err(resp.body.to_string()),
            }
        })
        .await;
    }

    // The operator moves the tenant to another domain: B forgets the old one, knows the new.
    let moved = format!("moved.{slug}.example.net");
    let resp = b
        .gql_with(None, &[("host", &moved)], PUBLIC, json!({}))
        .await;
    assert!(resp.ok()["publicTenant"].is_null());
    a.gql(
        Some(&admin),
        "mutation($id: ID!, $d: String) { updateTenant(id: $id, input: { domain: $d }) { domain } }",
        json!({ "id": t.id.to_string(), "d": moved }),
    )
    .await
    .ok();
    within_a_second("moved domain", || async {
        let new = b
            .gql_with(None, &[("host", &moved)], PUBLIC, json!({}))
            .await;
        let old = b
            .gql_with(None, &[("host", &domain)], PUBLIC, json!({}))
            .await;
        match (
            new.body["data"]["publicTenant"]["slug"].as_str(),
            old.body["data"]["publicTenant"].is_null(),
        ) {
            (Some(s), true) if s == slug => Ok(()),
            _ => Err(format!("{} / {}", new.body, old.body)),
        }
    })
    .await;
}

// ---- Custom domains resolve only after their DNS proof -------------------------------------

mod dns {
    //! A tiny authoritative DNS responder on UDP loopback: TXT answers from a shared map,
    //! NXDOMAIN for everything else.
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{RData, Record, RecordType};

    pub type Zone = Arc<Mutex<HashMap<String, Vec<String>>>>;

    pub async fn start() -> (SocketAddr, Zone) {
        let zone: Zone = Arc::default();
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let z = zone.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut resp = Message::response(query.metadata.id, query.metadata.op_code);
                resp.metadata.authoritative = true;
                resp.metadata.recursion_desired = query.metadata.recursion_desired;
                resp.metadata.recursion_available = true;
                resp.add_queries(query.queries.clone());
                for q in &query.queries {
                    let name = q.name().to_string().trim_end_matches('.').to_lowercase();
                    let values = z.lock().unwrap().get(&name).cloned().unwrap_or_default();
                    if q.query_type() == RecordType::TXT {
                        for v in values {
                            resp.add_answer(Record::from_rdata(
                                q.name().clone(),
                                0,
                                RData::TXT(TXT::new(vec![v])),
                            ));
                        }
                    }
                }
                if resp.answers.is_empty() {
                    resp.metadata.response_code = ResponseCode::NXDomain;
                }
                let _ = sock.send_to(&resp.to_vec().unwrap(), peer).await;
            }
        });
        (addr, zone)
    }
}

const SET_DOMAIN: &str =
    "mutation($id: ID!, $d: String) { updateTenant(id: $id, input: { domain: $d }) {
    domain pendingDomain { domain verificationToken txtRecordName expiresAt } } }";
const VERIFY: &str =
    "mutation($id: ID!) { verifyTenantDomain(id: $id) { domain pendingDomain { domain } } }";
const SERVICE_TOKEN: &str = "svc-token-for-domain-tests";

async fn with_dns() -> (TestApp, dns::Zone) {
    let (addr, zone) = dns::start().await;
    let app = TestApp::spawn_with(|env| {
        env.insert("DOMAIN_VERIFICATION_DNS".into(), addr.to_string());
        env.insert("SERVICE_TOKEN".into(), SERVICE_TOKEN.into());
    })
    .await;
    (app, zone)
}

async fn resolves_to(app: &TestApp, host: &str) -> Option<String> {
    let resp = app
        .gql_with(None, &[("host", host)], PUBLIC, json!({}))
        .await;
    resp.ok()["publicTenant"]["slug"].as_str().map(String::from)
}

async fn validate_domain(app: &TestApp, domain: &str) -> bool {
    let resp = app
        .post_json(
            "/internal/tenants/validate",
            None,
            &[("x-service-token", SERVICE_TOKEN)],
            &json!({ "domain": domain }),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.body["valid"].as_bool().unwrap()
}

async fn stored_domain(app: &TestApp, id: Uuid) -> Option<String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct D {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        domain: Option<String>,
    }
    let mut c = app.db.superuser().await;
    diesel::sql_query("select domain from tenants where id = $1")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .get_result::<D>(&mut c)
        .await
        .unwrap()
        .domain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_domain_resolves_only_after_its_dns_proof() {
    let (app, zone) = with_dns().await;
    let a = app.tenant().create().await;
    let b = app.tenant().create().await;
    let domain = "shop.victim-example.com";

    // A (the attacker) claims the domain first: a pending claim, nothing resolves.
    let resp = app
        .gql(
            Some(&a.admin),
            SET_DOMAIN,
            json!({ "id": a.id.to_string(), "d": domain }),
        )
        .await;
    let t = &resp.ok()["updateTenant"];
    assert!(
        t["domain"].is_null(),
        "a claim is not a verified domain: {t}"
    );
    assert_eq!(t["pendingDomain"]["domain"], domain);
    assert_eq!(
        t["pendingDomain"]["txtRecordName"],
        format!("_tenantry-challenge.{domain}")
    );
    let token_a = t["pendingDomain"]["verificationToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(resolves_to(&app, domain).await, None);
    assert!(!validate_domain(&app, domain).await);

    // B (who controls the domain) may claim it too.
    let resp = app
        .gql(
            Some(&b.admin),
            SET_DOMAIN,
            json!({ "id": b.id.to_string(), "d": domain }),
        )
        .await;
    let token_b = resp.ok()["updateTenant"]["pendingDomain"]["verificationToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(token_a, token_b);

    // Without the record, verification is refused and nothing is written.
    app.gql(Some(&a.admin), VERIFY, json!({ "id": a.id.to_string() }))
        .await
        .err("BAD_USER_INPUT");
    assert_eq!(stored_domain(&app, a.id).await, None);

    // A can neither see nor verify B's claim.
    app.gql(
        Some(&a.admin),
        "query($id: ID!) { tenant(id: $id) { pendingDomain { verificationToken } } }",
        json!({ "id": b.id.to_string() }),
    )
    .await
    .err("NOT_FOUND");
    app.gql(Some(&a.admin), VERIFY, json!({ "id": b.id.to_string() }))
        .await
        .err("NOT_FOUND");
    // B's members see no token and cannot verify.
    app.gql(
        Some(&b.member),
        "{ tenant { pendingDomain { verificationToken } } }",
        json!({}),
    )
    .await
    .err("FORBIDDEN");
    app.gql(Some(&b.member), VERIFY, json!({ "id": b.id.to_string() }))
        .await
        .err("FORBIDDEN");

    // The domain's owner publishes B's token: A's proof still fails, B's holds.
    zone.lock()
        .unwrap()
        .insert(format!("_tenantry-challenge.{domain}"), vec![token_b]);
    app.gql(Some(&a.admin), VERIFY, json!({ "id": a.id.to_string() }))
        .await
        .err("BAD_USER_INPUT");
    assert_eq!(stored_domain(&app, a.id).await, None);
    let resp = app
        .gql(Some(&b.admin), VERIFY, json!({ "id": b.id.to_string() }))
        .await;
    assert_eq!(resp.ok()["verifyTenantDomain"]["domain"], domain);
    assert!(resp.ok()["verifyTenantDomain"]["pendingDomain"].is_null());
    assert_eq!(resolves_to(&app, domain).await, Some(b.slug.clone()));
    assert!(validate_domain(&app, domain).await);

    // Even with its own token published, A cannot take a verified domain.
    zone.lock()
        .unwrap()
        .insert(format!("_tenantry-challenge.{domain}"), vec![token_a]);
    app.gql(Some(&a.admin), VERIFY, json!({ "id": a.id.to_string() }))
        .await
        .err("CONFLICT");
    app.gql(
        Some(&a.admin),
        SET_DOMAIN,
        json!({ "id": a.id.to_string(), "d": domain }),
    )
    .await
    .err("CONFLICT");
    assert_eq!(stored_domain(&app, a.id).await, None);
    assert_eq!(resolves_to(&app, domain).await, Some(b.slug.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_expire_and_operators_set_verified_domains() {
    let (app, zone) = with_dns().await;
    let a = app.tenant().create().await;
    let domain = "portal.expiring-example.com";
    let resp = app
        .gql(
            Some(&a.admin),
            SET_DOMAIN,
            json!({ "id": a.id.to_string(), "d": domain }),
        )
        .await;
    let token = resp.ok()["updateTenant"]["pendingDomain"]["verificationToken"]
        .as_str()
        .unwrap()
        .to_owned();
    zone.lock()
        .unwrap()
        .insert(format!("_tenantry-challenge.{domain}"), vec![token]);
    // The claim lapses: it is gone, and the record no longer counts.
    {
        use diesel_async::SimpleAsyncConnection;
        let mut c = app.db.superuser().await;
        c.batch_execute(&format!(
            "update tenant_domain_claims set expires_at = now() - interval '1 minute' where tenant_id = '{}'",
            a.id
        ))
        .await
        .unwrap();
    }
    let resp = app
        .gql(
            Some(&a.admin),
            "{ tenant { pendingDomain { domain } } }",
            json!({}),
        )
        .await;
    assert!(resp.ok()["tenant"]["pendingDomain"].is_null());
    app.gql(Some(&a.admin), VERIFY, json!({ "id": a.id.to_string() }))
        .await
        .err("BAD_USER_INPUT");
    assert_eq!(resolves_to(&app, domain).await, None);

    // A platform admin is the operator: the domain is verified at once.
    let resp = app
        .gql(
            Some(&app.admin_token()),
            SET_DOMAIN,
            json!({ "id": a.id.to_string(), "d": domain }),
        )
        .await;
    assert_eq!(resp.ok()["updateTenant"]["domain"], domain);
    assert_eq!(resolves_to(&app, domain).await, Some(a.slug.clone()));
    // Clearing it (tenant admin) frees it at once.
    app.gql(
        Some(&a.admin),
        SET_DOMAIN,
        json!({ "id": a.id.to_string(), "d": null }),
    )
    .await
    .ok();
    assert_eq!(resolves_to(&app, domain).await, None);
}
