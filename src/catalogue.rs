//! Input checks shared by the catalogue's platform-admin writes (plans, feature definitions,
//! resource types): the same key rule and description bound everywhere, with the same
//! BAD_USER_INPUT wording.

use crate::error::{AppError, AppResult};

/// Longest description of a catalogue entry (the columns' CHECKs).
pub const MAX_DESCRIPTION: usize = 500;

/// A key of a feature or a resource type: `[a-z][a-z0-9_]{0,63}`.
pub fn check_key(key: &str) -> AppResult<()> {
    if crate::resource_types::model::valid_key(key) {
        Ok(())
    } else {
        Err(AppError::bad_input(
            "key",
            "key must match [a-z][a-z0-9_]{0,63}",
        ))
    }
}

/// A description: at most [`MAX_DESCRIPTION`] characters, without NUL (PostgreSQL text
/// cannot hold it: refused here rather than failing the insert).
pub fn check_description(description: &str) -> AppResult<()> {
    if description.chars().count() > MAX_DESCRIPTION || description.contains('\0') {
        return Err(AppError::bad_input(
            "description",
            format!("description must be at most {MAX_DESCRIPTION} characters, without NUL"),
        ));
    }
    Ok(())
}
