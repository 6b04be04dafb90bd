//! Relay connections over keyset pages ([`crate::db::page`]): `first` (default 20, at most
//! 100), `after` as an opaque cursor over the list's key `(time, id)`, `pageInfo` from one
//! extra row and `totalCount` counted only when selected, in the same transaction as the rows.
//!
//! A connection resolver is three steps:
//!
//! ```ignore
//! let page = page_args::<Uuid>(ctx, first, after.as_deref())?;    // cursor + look-ahead
//! let page = service::list(&req.db, &actor, filter, page).await?; // PageArgs -> Page<Row>
//! Ok(connection(page, |r| (r.created_at, r.id), |rows| rows.into_iter().map(Node::from).collect()))
//! ```
//!
//! The connection's type is `Connection<Cursor<Id>, Node, TotalCount>`; `Id` is the key's id
//! type ([`CursorId`]: `Uuid`, `TenantId` for the tenant list, or `String` for Stripe's event
//! ids). The cursor text is
//! `base64url("<micros>|<id>")` for every list.

use async_graphql::connection::{Connection, CursorType, Edge};
use async_graphql::{Context, OutputType};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use crate::db::page::{Key, Page, PageArgs, DEFAULT_PAGE, MAX_PAGE};
use crate::error::AppError;
use crate::ids::TenantId;

/// The id half of a cursor's key.
pub trait CursorId: Sized + Send + Sync {
    fn parse(s: &str) -> Option<Self>;
    fn text(&self) -> String;
}

impl CursorId for Uuid {
    fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok()
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

/// The admin tenant list is keyed by `(createdAt, TenantId)`; the cursor text is the same UUID.
impl CursorId for TenantId {
    fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok().map(TenantId::from)
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

impl CursorId for String {
    fn parse(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
    fn text(&self) -> String {
        self.clone()
    }
}

/// Opaque cursor over a row's key `(time, id)`.
pub struct Cursor<Id = Uuid>(pub Key<Id>);

/// The cursor of the lists keyed by `(createdAt, id: Uuid)`.
pub type KeysetCursor = Cursor<Uuid>;

impl<Id: CursorId> CursorType for Cursor<Id> {
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
        Ok(Cursor((ts, Id::parse(id).ok_or_else(bad)?)))
    }

    fn encode_cursor(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            self.0 .0.timestamp_micros(),
            self.0 .1.text()
        ))
    }
}

/// A connection's `totalCount`, filled only when the query selects it ([`wants_total`]);
/// otherwise the field is not in the answer and 0 is never seen.
#[derive(async_graphql::SimpleObject)]
pub struct TotalCount {
    pub total_count: i64,
}

/// Whether the current connection field selects `totalCount`.
pub fn wants_total(ctx: &Context<'_>) -> bool {
    ctx.look_ahead().field("totalCount").exists()
}

/// The page request of a connection field: `first` checked, `after` decoded, and
/// `with_total` set when the query selects `totalCount`.
pub fn page_args<Id: CursorId>(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<&str>,
) -> Result<PageArgs<Id>, AppError> {
    // `first` is checked before the cursor is read, as every list did before this helper.
    let mut page = PageArgs::new(first, None, wants_total(ctx))?;
    page.after = after
        .map(Cursor::<Id>::decode_cursor)
        .transpose()?
        .map(|c| c.0);
    Ok(page)
}

/// The connection of `page`: `key` gives each row's cursor key, `nodes` turns the page's rows
/// into nodes all at once (so nested fields can batch across them).
pub fn connection<R, N, Id: CursorId>(
    page: Page<R>,
    key: impl Fn(&R) -> Key<Id>,
    nodes: impl FnOnce(Vec<R>) -> Vec<N>,
) -> Connection<Cursor<Id>, N, TotalCount>
where
    N: OutputType,
{
    let cursors: Vec<Cursor<Id>> = page.rows.iter().map(|r| Cursor(key(r))).collect();
    let total_count = page.total_count.unwrap_or(0);
    let mut conn = Connection::with_additional_fields(
        page.has_previous,
        page.has_next,
        TotalCount { total_count },
    );
    conn.edges.extend(
        cursors
            .into_iter()
            .zip(nodes(page.rows))
            .map(|(c, n)| Edge::new(c, n)),
    );
    conn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_input_is_refused() {
        let c: KeysetCursor = Cursor((Utc::now(), Uuid::now_v7()));
        let back = KeysetCursor::decode_cursor(&c.encode_cursor()).unwrap();
        assert_eq!(
            (back.0 .0.timestamp_micros(), back.0 .1),
            (c.0 .0.timestamp_micros(), c.0 .1)
        );
        assert!(KeysetCursor::decode_cursor("garbage").is_err());
        let s = Cursor((Utc::now(), "evt_1|x".to_string()));
        let back = Cursor::<String>::decode_cursor(&s.encode_cursor()).unwrap();
        assert_eq!(back.0 .1, "evt_1|x");
    }
}
