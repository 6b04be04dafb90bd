//! Per-tenant configuration caps: how many entries and how many stored bytes a tenant may
//! keep. Checked by `service::set` inside its transaction, after the write, with the tenant
//! row locked (so concurrent writers cannot both pass).

use super::store::Totals;
use crate::error::{AppError, AppResult};

/// Per-tenant caps (`CONFIG_MAX_ENTRIES`, `CONFIG_MAX_BYTES`). A write that grows past one is
/// refused; one that does not grow what is already over (after the cap was lowered) passes.
pub fn check(bounds: &crate::config::TenantBounds, before: Totals, after: Totals) -> AppResult<()> {
    if after.entries > bounds.config_max_entries && after.entries > before.entries {
        return Err(AppError::bad_input(
            "key",
            format!(
                "the tenant already has {} configuration entries, the limit (CONFIG_MAX_ENTRIES) is {}",
                before.entries, bounds.config_max_entries
            ),
        ));
    }
    if after.bytes > bounds.config_max_bytes && after.bytes > before.bytes {
        return Err(AppError::bad_input(
            "value",
            format!(
                "the tenant's configuration values would take {} bytes, the limit (CONFIG_MAX_BYTES) is {}",
                after.bytes, bounds.config_max_bytes
            ),
        ));
    }
    Ok(())
}
