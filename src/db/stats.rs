//! Counting SQL statements per request (SPEC §6: the count is bounded by the query's shape).
//! The counter is installed on the connection for each unit of work and reported by the
//! GraphQL handler as a metric and the `x-sql-statements` response header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use diesel::connection::{Instrumentation, InstrumentationEvent};

#[derive(Debug, Default)]
pub struct RequestStats {
    statements: AtomicU64,
}

impl RequestStats {
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}

pub(super) struct StatementCounter(Option<Arc<RequestStats>>);

impl StatementCounter {
    pub(super) fn new(stats: Option<Arc<RequestStats>>) -> Self {
        StatementCounter(stats)
    }
}

impl Instrumentation for StatementCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            metrics::counter!("tenantry_sql_statements_total").increment(1);
            if let Some(stats) = &self.0 {
                stats.statements.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
