//! Enums stored as `text` columns. A column whose values are a closed set (a status, a cycle,
//! a data type) is read into its enum by diesel: a value the code does not know is a
//! deserialization error, never silently read as some default.

/// Declares an enum stored in a `text` column: `as_str` (what is written), `from_text` (the
/// strict inverse), `ALL` (every variant), serde's `Serialize` (the text), and diesel's `FromSql`/`ToSql` over `Text`, so the
/// enum can be a field of a `Queryable` row and a bind of `.eq(..)`. Attributes (derives, doc
/// comments) pass through to the enum; mind that a doc comment on an `async_graphql::Enum`
/// becomes its description in schema.graphql.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $($variant:ident = $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
        #[diesel(sql_type = diesel::sql_types::Text)]
        $vis enum $name { $($variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The variant stored as `s`; `None` for any other text.
            pub fn from_text(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        /// Serialized as its stored text (audit entries, JSON answers).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = std::str::from_utf8(value.as_bytes())?;
                $name::from_text(text).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " {:?} in the database"), text)
                        .into()
                })
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                std::io::Write::write_all(out, self.as_str().as_bytes())?;
                Ok(diesel::serialize::IsNull::No)
            }
        }
    };
}
pub(crate) use text_enum;

/// Test helpers: the round trip through a real PostgreSQL (`TEST_DATABASE_URL`, as the
/// integration tests use it; no database of the application is needed).
#[cfg(test)]
pub(crate) mod testing {
    use diesel_async::{AsyncConnection, AsyncPgConnection};

    pub(crate) async fn connect() -> AsyncPgConnection {
        let url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        AsyncPgConnection::establish(&url)
            .await
            .expect("connect to TEST_DATABASE_URL (scripts/test.sh starts PostgreSQL)")
    }

    /// Every variant of a `text_enum!` type, bound and selected back, is itself; `$unknown`
    /// read back is an error naming the value.
    macro_rules! assert_round_trip {
        ($ty:ty, $unknown:literal) => {{
            use diesel::IntoSql as _;
            use diesel_async::RunQueryDsl;
            let mut conn = $crate::db::text_enum::testing::connect().await;
            for &v in <$ty>::ALL {
                let select = diesel::select(v.into_sql::<diesel::sql_types::Text>());
                let back: $ty = RunQueryDsl::get_result(select, &mut conn)
                    .await
                    .expect("a known value reads back");
                assert_eq!(back, v);
            }
            let select = diesel::select($unknown.into_sql::<diesel::sql_types::Text>());
            let err = RunQueryDsl::get_result::<$ty>(select, &mut conn)
                .await
                .expect_err("an unknown value must not read as a variant");
            // Diesel names the field in `Display`; the reason is in the error it wraps.
            let reason = format!("{err:?}");
            assert!(reason.contains($unknown), "{reason}");
        }};
    }
    pub(crate) use assert_round_trip;
}

#[cfg(test)]
mod tests {
    text_enum!(
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Shade {
            Light = "LIGHT",
            Dark = "DARK",
        }
    );

    #[test]
    fn text_is_the_strict_inverse() {
        for &s in Shade::ALL {
            assert_eq!(Shade::from_text(s.as_str()), Some(s));
        }
        assert_eq!(Shade::from_text("light"), None);
        assert_eq!(Shade::from_text(""), None);
    }

    #[tokio::test]
    async fn round_trip_through_postgres() {
        super::testing::assert_round_trip!(Shade, "DIM");
    }
}
