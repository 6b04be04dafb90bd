//! Keyset pages, the one way every growing list is read: a [`PageArgs`] (how many rows, after
//! which key, whether to count) goes down to the service and store as a plain value; a
//! [`Page`] (rows, `has_next`, the optional total) comes back up. No GraphQL here: cursors and
//! connections are built from a page by `crate::graphql::pagination`.
//!
//! Rows are ordered by a key `(time, id)`; `Id` is `Uuid` for most tables (`String` for Stripe's
//! event ids). The store's list takes `(after: Option<Key<Id>>, limit: i64)` and its count the
//! same filter; a service then reads a page in one call:
//!
//! ```ignore
//! page.load(db, scope,
//!     |c, after, limit| store::list(c, &filter, after, limit).scope_boxed(),
//!     |c| store::count(c, &filter).scope_boxed(),
//! ).await // AppResult<Page<Row>>
//! ```
//!
//! or, inside a transaction it already holds, `page.fetch(conn, list, count)`. Both ask the
//! store for one row more than the page (so `has_next` needs no second query) and run the count
//! only when [`PageArgs::with_total`] is set, on the same connection: rows and `totalCount` come
//! from one transaction.

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use scoped_futures::{ScopedBoxFuture, ScopedFutureExt};
use uuid::Uuid;

use super::{Conn, Db, Scope};
use crate::error::{AppError, AppResult};

/// Largest page a client may ask for.
pub const MAX_PAGE: i32 = 100;
/// The page size when the client names none.
pub const DEFAULT_PAGE: i32 = 20;

/// The position of a row in its list: `(created_at, id)` or the table's own pair.
pub type Key<Id = Uuid> = (DateTime<Utc>, Id);

/// A store's list query for a page: `(conn, after, limit)` → rows in the list's order.
pub trait ListFn<'a, Id, R>:
    for<'r> FnOnce(
        &'r mut Conn,
        Option<Key<Id>>,
        i64,
    ) -> ScopedBoxFuture<'a, 'r, QueryResult<Vec<R>>>
    + Send
    + 'a
{
}

impl<'a, Id, R, F> ListFn<'a, Id, R> for F where
    F: for<'r> FnOnce(
            &'r mut Conn,
            Option<Key<Id>>,
            i64,
        ) -> ScopedBoxFuture<'a, 'r, QueryResult<Vec<R>>>
        + Send
        + 'a
{
}

/// A store's count of the same list.
pub trait CountFn<'a>:
    for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, QueryResult<i64>> + Send + 'a
{
}

impl<'a, F> CountFn<'a> for F where
    F: for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, QueryResult<i64>> + Send + 'a
{
}

/// A validated page request.
#[derive(Debug, Clone)]
pub struct PageArgs<Id = Uuid> {
    /// Rows in the page (0..=[`MAX_PAGE`]).
    pub first: usize,
    /// The key of the last row of the previous page: the page starts after it.
    pub after: Option<Key<Id>>,
    /// Whether to count every row of the list too (only when the client selects it).
    pub with_total: bool,
}

impl<Id> PageArgs<Id> {
    /// Checks `first` (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]).
    pub fn new(first: Option<i32>, after: Option<Key<Id>>, with_total: bool) -> AppResult<Self> {
        let first = first.unwrap_or(DEFAULT_PAGE);
        if !(0..=MAX_PAGE).contains(&first) {
            return Err(AppError::bad_input(
                "first",
                format!("first must be between 0 and {MAX_PAGE}"),
            ));
        }
        Ok(PageArgs {
            first: first as usize,
            after,
            with_total,
        })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn limit(&self) -> i64 {
        self.first as i64 + 1
    }

    /// The page from `rows` fetched with [`PageArgs::limit`] and the count, if any.
    pub fn page<R>(&self, rows: Vec<R>, total_count: Option<i64>) -> Page<R> {
        Page::cut(self.first, self.after.is_some(), rows, total_count)
    }

    /// Runs `list(conn, after, limit)` and, when asked, `count(conn)` on `conn` (the caller's
    /// transaction), and returns the page.
    pub async fn fetch<'a, R, L, C>(
        self,
        conn: &mut Conn,
        list: L,
        count: C,
    ) -> QueryResult<Page<R>>
    where
        Id: Send + 'a,
        R: Send,
        L: ListFn<'a, Id, R>,
        C: CountFn<'a>,
    {
        let (limit, first, has_previous) = (self.limit(), self.first, self.after.is_some());
        let rows = list(conn, self.after, limit).await?;
        let total_count = match self.with_total {
            true => Some(count(conn).await?),
            false => None,
        };
        Ok(Page::cut(first, has_previous, rows, total_count))
    }
}

impl<Id: Send> PageArgs<Id> {
    /// [`PageArgs::fetch`] in a transaction of its own, in `scope`: for a service whose unit of
    /// work is just the page.
    pub async fn load<'a, R, L, C>(
        self,
        db: &Db,
        scope: Scope,
        list: L,
        count: C,
    ) -> AppResult<Page<R>>
    where
        Id: 'a,
        R: Send + 'a,
        L: ListFn<'a, Id, R>,
        C: CountFn<'a>,
    {
        db.scoped(scope, move |c| {
            async move { Ok(self.fetch(c, list, count).await?) }.scope_boxed()
        })
        .await
    }
}

/// One page of a list, in the list's order.
#[derive(Debug, Clone)]
pub struct Page<R> {
    /// At most `first` rows.
    pub rows: Vec<R>,
    /// Whether the page started after a key (a previous page exists).
    pub has_previous: bool,
    /// Whether more rows follow this page.
    pub has_next: bool,
    /// Rows of the whole list, when [`PageArgs::with_total`] asked for it.
    pub total_count: Option<i64>,
}

impl<R> Page<R> {
    /// `rows` fetched with one extra row, cut to `first`.
    fn cut(first: usize, has_previous: bool, mut rows: Vec<R>, total_count: Option<i64>) -> Self {
        let has_next = rows.len() > first;
        rows.truncate(first);
        Page {
            rows,
            has_previous,
            has_next,
            total_count,
        }
    }

    /// The same page with each row turned into something else (a domain view, say).
    pub fn map<T>(self, f: impl FnMut(R) -> T) -> Page<T> {
        Page {
            rows: self.rows.into_iter().map(f).collect(),
            has_previous: self.has_previous,
            has_next: self.has_next,
            total_count: self.total_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_checked_and_one_extra_row_means_a_next_page() {
        assert!(PageArgs::<Uuid>::new(Some(101), None, false).is_err());
        assert!(PageArgs::<Uuid>::new(Some(-1), None, false).is_err());
        let args = PageArgs::<Uuid>::new(None, None, false).unwrap();
        assert_eq!(args.limit(), 21);
        let args = PageArgs::<Uuid>::new(Some(2), None, false).unwrap();
        let page = args.page(vec![1, 2, 3], None);
        assert_eq!(
            (page.rows, page.has_next, page.has_previous),
            (vec![1, 2], true, false)
        );
        let page = args.page(vec![1, 2], Some(2));
        assert_eq!((page.has_next, page.total_count), (false, Some(2)));
    }
}
