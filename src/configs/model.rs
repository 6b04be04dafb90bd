//! Configuration rows, data types and the read model.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;

use crate::db::schema::{config_defaults, configs};
use crate::db::text_enum::text_enum;
use crate::ids::TenantId;

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = configs, check_for_backend(diesel::pg::Pg))]
pub struct ConfigRow {
    pub tenant_id: TenantId,
    pub category: String,
    pub key: String,
    pub value: Option<Value>,
    pub encrypted_value: Option<Vec<u8>>,
    pub data_type: ConfigDataType,
    pub encrypted: bool,
    pub updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = config_defaults, check_for_backend(diesel::pg::Pg))]
pub struct ConfigDefault {
    pub category: String,
    pub key: String,
    pub value: Value,
    pub data_type: ConfigDataType,
}

// The type of a configuration value (`configs.data_type`, `config_defaults.data_type`).
text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ConfigDataType {
        String = "STRING",
        Number = "NUMBER",
        Boolean = "BOOLEAN",
        Json = "JSON",
    }
);

impl ConfigDataType {
    /// The type a value has when the caller does not say.
    pub fn infer(v: &Value) -> Self {
        match v {
            Value::String(_) => ConfigDataType::String,
            Value::Number(_) => ConfigDataType::Number,
            Value::Bool(_) => ConfigDataType::Boolean,
            _ => ConfigDataType::Json,
        }
    }

    pub fn fits(self, v: &Value) -> bool {
        match self {
            ConfigDataType::String => v.is_string(),
            ConfigDataType::Number => v.is_number(),
            ConfigDataType::Boolean => v.is_boolean(),
            ConfigDataType::Json => !v.is_null(),
        }
    }
}

/// Which layer an entry comes from.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigLayer {
    System,
    Plan,
    Default,
    Tenant,
}

impl ConfigLayer {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigLayer::System => "SYSTEM",
            ConfigLayer::Plan => "PLAN",
            ConfigLayer::Default => "DEFAULT",
            ConfigLayer::Tenant => "TENANT",
        }
    }
}

/// One entry of the tenant layer as a caller may see it (decrypted or masked).
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub category: String,
    pub key: String,
    pub value: Value,
    pub data_type: ConfigDataType,
    pub encrypted: bool,
    pub layer: ConfigLayer,
    pub updated_at: Option<DateTime<Utc>>,
}

/// What members see instead of an encrypted value.
pub const MASK: &str = "********";

/// The tenant categories named by the spec; others may be created freely.
pub const KNOWN_CATEGORIES: [&str; 4] = ["branding", "notifications", "security", "integrations"];
/// Read-only layers: never written through the API.
pub const RESERVED_CATEGORIES: [&str; 2] = ["system", "plan"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_must_fit_their_type() {
        assert!(ConfigDataType::Number.fits(&json!(3.5)));
        assert!(!ConfigDataType::Number.fits(&json!("3")));
        assert!(!ConfigDataType::Boolean.fits(&json!(1)));
        assert!(ConfigDataType::Json.fits(&json!({"a": [1]})));
        assert!(!ConfigDataType::Json.fits(&json!(null)));
        assert_eq!(ConfigDataType::infer(&json!(true)), ConfigDataType::Boolean);
    }

    #[tokio::test]
    async fn data_type_round_trips_and_refuses_unknown_text() {
        crate::db::text_enum::testing::assert_round_trip!(ConfigDataType, "DATE");
    }
}
