//! Reading one variable: trimmed, empty means unset, and a value that does not parse names
//! its variable in the error. Also the two value checks other modules share (role names,
//! the encryption key).

use anyhow::{anyhow, bail, Context as _};

/// A key lookup (the process environment, or a map in tests) with the parse rules every
/// setting uses.
pub(super) struct Env<F> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub(super) fn new(get: F) -> Self {
        Env { get }
    }

    /// The trimmed value; blank counts as unset.
    pub(super) fn var(&self, k: &str) -> Option<String> {
        (self.get)(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value in lower case (for case-insensitive choices).
    pub(super) fn lower(&self, k: &str) -> Option<String> {
        self.var(k).map(|v| v.to_ascii_lowercase())
    }

    /// A whole number, `default` when unset.
    pub(super) fn number(&self, k: &str, default: u64) -> anyhow::Result<u64> {
        match self.var(k) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .with_context(|| format!("{k} must be a whole number, got {v:?}")),
        }
    }

    /// A whole number that must lie in `min..=max`.
    pub(super) fn ranged(&self, k: &str, default: u64, min: u64, max: u64) -> anyhow::Result<i64> {
        let v = self.number(k, default)?;
        if !(min..=max).contains(&v) {
            bail!("{k} must be between {min} and {max}, got {v}");
        }
        Ok(v as i64)
    }

    /// A duration: `30s`, `10m`, `1h 30m` (humantime) or whole seconds, `default` when unset.
    pub(super) fn duration(
        &self,
        k: &str,
        default: std::time::Duration,
    ) -> anyhow::Result<std::time::Duration> {
        match self.var(k) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(secs) => Ok(std::time::Duration::from_secs(secs)),
                Err(_) => humantime::parse_duration(&v).with_context(|| {
                    format!("{k} must be a duration such as 30s or 10m, got {v:?}")
                }),
            },
        }
    }

    /// `1/true/yes/on` or `0/false/no/off`, `default` when unset.
    pub(super) fn flag(&self, k: &str, default: bool) -> anyhow::Result<bool> {
        match self.lower(k) {
            None => Ok(default),
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => bail!("{k} must be true or false, got {v:?}"),
        }
    }
}

/// Role names are interpolated into `SET ROLE`/`GRANT`, so only plain identifiers are allowed.
pub fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// `CONFIG_ENCRYPTION_KEY`: base64 of exactly 32 bytes (AES-256).
pub(super) fn decode_key(b64: &str) -> anyhow::Result<[u8; 32]> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| anyhow!("CONFIG_ENCRYPTION_KEY must be base64: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        anyhow!(
            "CONFIG_ENCRYPTION_KEY must decode to 32 bytes, got {}",
            b.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env::new(move |k: &str| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn blank_is_unset_and_values_are_trimmed() {
        let e = env(&[("A", "  "), ("B", " x "), ("N", " 7 ")]);
        assert_eq!(e.var("A"), None);
        assert_eq!(e.var("B").as_deref(), Some("x"));
        assert_eq!(e.number("N", 1).unwrap(), 7);
        assert_eq!(e.number("A", 1).unwrap(), 1);
    }

    #[test]
    fn flags_and_ranges_name_their_variable() {
        let e = env(&[("F", "On"), ("G", "maybe"), ("R", "0")]);
        assert!(e.flag("F", false).unwrap());
        assert!(!e.flag("UNSET", false).unwrap());
        assert!(e.flag("G", true).unwrap_err().to_string().contains('G'));
        assert!(e
            .ranged("R", 5, 1, 9)
            .unwrap_err()
            .to_string()
            .contains("R must be"));
        assert_eq!(e.ranged("UNSET", 5, 1, 9).unwrap(), 5);
    }

    #[test]
    fn durations_are_humantime_or_seconds() {
        use std::time::Duration;
        let e = env(&[("D", "10m"), ("S", "45"), ("X", "soon")]);
        let d = Duration::from_secs(7);
        assert_eq!(e.duration("D", d).unwrap(), Duration::from_secs(600));
        assert_eq!(e.duration("S", d).unwrap(), Duration::from_secs(45));
        assert_eq!(e.duration("UNSET", d).unwrap(), d);
        assert!(e
            .duration("X", d)
            .unwrap_err()
            .to_string()
            .contains("X must be"));
    }

    #[test]
    fn identifiers_and_keys() {
        assert!(is_plain_identifier("tenantry_app"));
        assert!(!is_plain_identifier("x; drop"));
        assert!(!is_plain_identifier("9abc"));
        assert!(decode_key("c2hvcnQ=")
            .unwrap_err()
            .to_string()
            .contains("32 bytes"));
        assert!(decode_key("!!").is_err());
        assert_eq!(
            decode_key("a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=").unwrap(),
            [b'k'; 32]
        );
    }
}
