//! Relay cursor pagination, shared by every growing list: `first` (default 20, at most 100),
//! `after` as an opaque keyset cursor over (createdAt, id), and `pageInfo` from one extra row.

use async_graphql::connection::{Connection, CursorType, Edge};
use async_graphql::OutputType;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::AppError;

pub const MAX_PAGE: i32 = 100;
pub const DEFAULT_PAGE: i32 = 20;

/// Opaque cursor over (createdAt, id).
pub struct KeysetCursor(pub DateTime<Utc>, pub Uuid);

impl CursorType for KeysetCursor {
    type Error = AppError;

    fn decode_cursor(s: &str) -> Result<Self, AppError> {
        let bad = || AppError::bad_input("after", "invalid cursor");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (ts, id) = raw.split_once('|').ok_or_else(bad)?;
        let micros: i64 = ts.parse().map_err(|_| bad())?;
        let ts = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad)?;
        Ok(KeysetCursor(ts, Uuid::parse_str(id).map_err(|_| bad())?))
    }

    fn encode_cursor(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            self.0.timestamp_micros(),
            self.1
        ))
    }
}

/// A connection's `totalCount`. Resolvers count only when the query asks for it
/// ([`wants_total`]); otherwise the field is not in the answer and 0 is never seen.
#[derive(async_graphql::SimpleObject)]
pub struct TotalCount {
    pub total_count: i64,
}

/// Whether the current connection field selects `totalCount`.
pub fn wants_total(ctx: &async_graphql::Context<'_>) -> bool {
    ctx.look_ahead().field("totalCount").exists()
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct PageArgs {
    pub first: usize,
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

impl PageArgs {
    pub fn parse(first: Option<i32>, after: Option<&str>) -> Result<PageArgs, AppError> {
        let first = first.unwrap_or(DEFAULT_PAGE);
        if !(0..=MAX_PAGE).contains(&first) {
            return Err(AppError::bad_input(
                "first",
                format!("first must be between 0 and {MAX_PAGE}"),
            ));
        }
        let after = after
            .map(KeysetCursor::decode_cursor)
            .transpose()?
            .map(|c| (c.0, c.1));
        Ok(PageArgs {
            first: first as usize,
            after,
        })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn limit(&self) -> i64 {
        self.first as i64 + 1
    }

    /// The connection for `rows` fetched with [`PageArgs::limit`]; `nodes` turns the page's
    /// rows into nodes all at once (so nested fields can batch across them).
    pub fn connection<R, N, F>(
        &self,
        mut rows: Vec<R>,
        key: impl Fn(&R) -> (DateTime<Utc>, Uuid),
        nodes: impl FnOnce(Vec<R>) -> Vec<N>,
        fields: F,
    ) -> Connection<KeysetCursor, N, F>
    where
        N: OutputType,
        F: async_graphql::ObjectType,
    {
        let has_next = rows.len() > self.first;
        rows.truncate(self.first);
        let cursors: Vec<KeysetCursor> = rows
            .iter()
            .map(key)
            .map(|(t, id)| KeysetCursor(t, id))
            .collect();
        let mut conn = Connection::with_additional_fields(self.after.is_some(), has_next, fields);
        conn.edges.extend(
            cursors
                .into_iter()
                .zip(nodes(rows))
                .map(|(c, n)| Edge::new(c, n)),
        );
        conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_input_is_refused() {
        let c = KeysetCursor(Utc::now(), Uuid::now_v7());
        let back = KeysetCursor::decode_cursor(&c.encode_cursor()).unwrap();
        assert_eq!(
            (back.0.timestamp_micros(), back.1),
            (c.0.timestamp_micros(), c.1)
        );
        assert!(KeysetCursor::decode_cursor("garbage").is_err());
        assert!(PageArgs::parse(Some(101), None).is_err());
        assert!(PageArgs::parse(Some(-1), None).is_err());
        assert_eq!(PageArgs::parse(None, None).unwrap().limit(), 21);
    }
}
