//! Typed ids: one newtype per kind of entity over its UUID, so a plan id cannot be passed where
//! a tenant id is expected. They are what rows, stores, services, loaders, scopes and events
//! carry; diesel reads and binds them as `uuid` columns, serde writes them as the UUID string.
//! The GraphQL boundary parses an `ID` argument with [`TenantId::parse`] (one error for every
//! malformed id) and answers `ID`s built from `to_string()`, so the schema does not see them.

use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// Declares `pub struct $name(Uuid)`: comparable, hashable, `Copy`; serialized and displayed as
/// the UUID; `From<Uuid>`, `into_inner`, `as_uuid`; a `uuid` column for diesel (`ToSql`/`FromSql`
/// delegate to `Uuid`'s); `parse` of client input. `$what` names the entity in its doc comment.
macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The id of a ", $what, ".")]
        #[derive(
            Copy,
            Clone,
            Debug,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
            diesel::expression::AsExpression,
            diesel::deserialize::FromSqlRow,
        )]
        #[serde(transparent)]
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered id (UUID v7), as rows are keyed.
            pub fn now_v7() -> Self {
                $name(Uuid::now_v7())
            }

            /// The id given by a client in `field`: a malformed one is `BAD_INPUT` on that field.
            pub fn parse(field: &'static str, s: &str) -> AppResult<Self> {
                Uuid::parse_str(s)
                    .map($name)
                    .map_err(|_| AppError::bad_input(field, format!("{field} must be a UUID")))
            }

            /// The bare UUID, for an API that takes any entity's id (audit `entityId`, export).
            pub fn into_inner(self) -> Uuid {
                self.0
            }

            /// The bare UUID, borrowed.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                $name(id)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Uuid, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <Uuid as diesel::serialize::ToSql<diesel::sql_types::Uuid, diesel::pg::Pg>>::to_sql(
                    &self.0, out,
                )
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Uuid, diesel::pg::Pg> for $name {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                <Uuid as diesel::deserialize::FromSql<diesel::sql_types::Uuid, diesel::pg::Pg>>::from_sql(value)
                    .map($name)
            }
        }
    };
}

id_type!(TenantId, "tenant");
id_type!(PlanId, "plan");
id_type!(IntentId, "plan change intent");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_is_the_uuid_string() {
        let id = TenantId::now_v7();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.into_inner()));
        let back: TenantId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<TenantId>("\"not-a-uuid\"").is_err());
    }

    #[test]
    fn displays_as_the_uuid() {
        let uuid = Uuid::now_v7();
        assert_eq!(PlanId::from(uuid).to_string(), uuid.to_string());
        assert_eq!(PlanId::from(uuid).as_uuid(), &uuid);
    }

    #[test]
    fn parse_refuses_a_malformed_id_on_its_field() {
        let uuid = Uuid::now_v7();
        assert_eq!(
            TenantId::parse("id", &uuid.to_string()).unwrap(),
            TenantId::from(uuid)
        );
        let err = TenantId::parse("tenantId", "acme").unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT");
        assert!(
            matches!(
                err,
                AppError::BadInput {
                    field: Some("tenantId"),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn round_trip_through_postgres() {
        use diesel::IntoSql as _;
        use diesel_async::RunQueryDsl;
        let mut conn = crate::db::text_enum::testing::connect().await;
        let id = TenantId::now_v7();
        let select = diesel::select(id.into_sql::<diesel::sql_types::Uuid>());
        let back: TenantId = RunQueryDsl::get_result(select, &mut conn).await.unwrap();
        assert_eq!(back, id);
        // As a raw query's bind, and read back as the uuid's text.
        let plan = PlanId::now_v7();
        #[derive(diesel::QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Text)]
            t: String,
        }
        let row: Text = diesel::sql_query("select $1::text as t")
            .bind::<diesel::sql_types::Uuid, _>(plan)
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(row.t, plan.to_string());
    }
}
