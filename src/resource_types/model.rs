//! A resource type row and the validated input of a new one.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::resource_types;
use crate::quotas::model::QuotaEnforcement;

#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = resource_types, check_for_backend(diesel::pg::Pg))]
pub struct ResourceTypeRow {
    pub key: String,
    /// What one unit of usage counts (`bytes`, `calls`, ...); new quotas take it by default.
    pub unit: String,
    /// The enforcement a new quota on this resource gets when none is given.
    pub default_enforcement: QuotaEnforcement,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

/// Longest unit (the column's CHECK; `setQuota`'s unit has the same bound).
pub const MAX_UNIT: usize = 32;

/// Is `key` a well-formed resource name, `[a-z][a-z0-9_]{0,63}`?
pub fn valid_key(key: &str) -> bool {
    key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lower_snake_case_up_to_64() {
        assert!(valid_key("api_calls"));
        assert!(valid_key("gpu2"));
        assert!(valid_key(&"a".repeat(64)));
        assert!(!valid_key(&"a".repeat(65)));
        assert!(!valid_key(""));
        assert!(!valid_key("2gpu"));
        assert!(!valid_key("_x"));
        assert!(!valid_key("Api"));
        assert!(!valid_key("api-calls"));
    }
}
