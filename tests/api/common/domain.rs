//! The GraphQL calls many tests make on the way to what they test, one method each, so a test
//! reads as what it does (`app.suspend_tenant(id, "unpaid").await.ok()`) and still asserts on
//! the answer itself. Calls whose arguments or selection are what a test is about stay written
//! out in that test.

use serde_json::json;

use super::{Gql, TestApp};

impl TestApp {
    /// `suspendTenant` as a platform admin (selects `id`).
    pub async fn suspend_tenant(&self, id: impl ToString, reason: &str) -> Gql {
        self.gql(
            Some(&self.admin_token()),
            "mutation($id: ID!, $reason: String!) { suspendTenant(id: $id, reason: $reason) { id } }",
            json!({ "id": id.to_string(), "reason": reason }),
        )
        .await
    }

    /// `deleteTenant` (soft delete) as a platform admin (selects `id`).
    pub async fn delete_tenant(&self, id: impl ToString) -> Gql {
        self.gql(
            Some(&self.admin_token()),
            "mutation($id: ID!) { deleteTenant(id: $id) { id } }",
            json!({ "id": id.to_string() }),
        )
        .await
    }

    /// `restoreTenant` as a platform admin (selects `id`).
    pub async fn restore_tenant(&self, id: impl ToString) -> Gql {
        self.gql(
            Some(&self.admin_token()),
            "mutation($id: ID!) { restoreTenant(id: $id) { id } }",
            json!({ "id": id.to_string() }),
        )
        .await
    }

    /// `recordUsage` of `amount` units of `resource` on the caller's tenant, without an
    /// idempotency key (selects `used`).
    pub async fn record_usage(&self, token: &str, resource: &str, amount: i64) -> Gql {
        self.gql(
            Some(token),
            "mutation($r: String!, $a: BigInt!) { recordUsage(resource: $r, amount: $a) { used } }",
            json!({ "r": resource, "a": amount }),
        )
        .await
    }

    /// `changePlan` of the caller's tenant to `plan`, default billing cycle (selects
    /// `id status`).
    pub async fn change_plan(&self, token: &str, plan: &str) -> Gql {
        self.gql(
            Some(token),
            "mutation($p: String!) { changePlan(planSlug: $p) { id status } }",
            json!({ "p": plan }),
        )
        .await
    }

    /// `setFeature` override on the caller's tenant (selects `key enabled source`).
    pub async fn set_feature(&self, token: &str, key: &str, enabled: bool) -> Gql {
        self.gql(
            Some(token),
            "mutation($k: String!, $on: Boolean!) { setFeature(key: $k, enabled: $on) { key enabled source } }",
            json!({ "k": key, "on": enabled }),
        )
        .await
    }
}

/// `writers` racing `recordUsage(resource, amount: 1)` calls with `token`, spread over the
/// instances at `bases` in turn; panics unless every one is answered 2xx.
pub async fn race_usage(bases: &[&str], token: &str, resource: &str, writers: usize) {
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let (base, token) = (bases[i % bases.len()].to_owned(), token.to_owned());
            let query = format!(
                "mutation {{ recordUsage(resource: \"{resource}\", amount: 1) {{ allowed }} }}"
            );
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{base}/graphql"))
                    .bearer_auth(token)
                    .json(&json!({ "query": query }))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_success());
    }
}
