//! Notification mail settings (SPEC §12): `SMTP_URL`, where mail goes (lettre's connection
//! URL; unset: mail is logged, not sent), and `MAIL_FROM`, the sender. Both are checked here
//! at start, so a typo stops the process instead of failing every mail later. The URL may
//! carry a password: it is never printed (its `Debug` and every error here leave it out).

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, bail};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, Tokio1Executor};

/// `MAIL_FROM` when unset.
pub const DEFAULT_MAIL_FROM: &str = "Tenantry <no-reply@localhost>";

/// `SMTP_URL`: `smtp://host:port` (plain, for a local relay), `smtp://host:587?tls=required`
/// (STARTTLS), `smtps://user:pass@host:465` (TLS from the start).
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(String);

impl SmtpUrl {
    /// Checks the URL the way the transport will read it (lettre's own parser).
    pub fn parse(raw: &str) -> anyhow::Result<SmtpUrl> {
        let example = "e.g. smtp://127.0.0.1:2525, smtp://host:587?tls=required or \
                       smtps://user:pass@host:465";
        if !(raw.starts_with("smtp://") || raw.starts_with("smtps://")) {
            bail!("SMTP_URL must start with smtp:// or smtps:// ({example})");
        }
        // lettre's errors name the scheme or the parse failure, never the URL itself.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(raw)
            .map_err(|e| anyhow!("SMTP_URL is not a usable SMTP URL ({e}); {example}"))?;
        Ok(SmtpUrl(raw.to_owned()))
    }

    /// The URL with its password, for the transport only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `scheme://host:port`, without user, password or query: safe to log.
    pub fn redacted(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("smtp", &self.0));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        format!("{scheme}://{host_port}")
    }

    /// The host part (IPv6 without brackets).
    pub fn host(&self) -> String {
        let host_port = self.redacted();
        let host_port = host_port.split_once("://").map_or("", |(_, h)| h);
        match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
            None => host_port.split(':').next().unwrap_or_default().to_owned(),
        }
    }

    /// Whether a user name or password is in the URL.
    pub fn has_credentials(&self) -> bool {
        let rest = self.0.split_once("://").map_or("", |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority.contains('@')
    }

    /// Plain `smtp://` without `?tls=required`: nothing forces encryption (lettre's
    /// `opportunistic` falls back to plain text when the server offers no STARTTLS).
    pub fn may_be_plain_text(&self) -> bool {
        // A `?` cannot stand unencoded in user or password: the query starts at the first.
        let query = self.0.split_once('?').map_or("", |(_, q)| q);
        let query = query.split('#').next().unwrap_or_default();
        self.0.starts_with("smtp://") && !query.split('&').any(|kv| kv == "tls=required")
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpUrl({})", self.redacted())
    }
}

/// `MAIL_FROM`: a mailbox, `Name <addr@domain>` or `addr@domain`.
pub fn mail_from(raw: Option<String>) -> anyhow::Result<Mailbox> {
    let raw = raw.unwrap_or_else(|| DEFAULT_MAIL_FROM.into());
    Mailbox::from_str(&raw).map_err(|e| {
        anyhow!("MAIL_FROM must be a mailbox such as `Tenantry <no-reply@example.com>` ({e}), got {raw:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::settings;
    use super::*;

    #[test]
    fn smtp_url_and_mail_from_are_checked_at_start() {
        let s = settings(&[]).unwrap();
        assert!(s.smtp_url.is_none());
        assert_eq!(s.mail_from.to_string(), DEFAULT_MAIL_FROM);

        let s = settings(&[
            ("SMTP_URL", "smtps://user:s3cret@mail.example.com:465"),
            ("MAIL_FROM", "Acme Ops <ops@example.com>"),
        ])
        .unwrap();
        let url = s.smtp_url.unwrap();
        assert_eq!(url.redacted(), "smtps://mail.example.com:465");
        assert_eq!(url.host(), "mail.example.com");
        assert!(url.has_credentials() && !url.may_be_plain_text());
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(s.mail_from.email.to_string(), "ops@example.com");

        for ok in ["smtp://127.0.0.1:2525", "smtp://host:587?tls=required"] {
            assert!(settings(&[("SMTP_URL", ok)]).is_ok(), "{ok}");
        }
        let sneaky = SmtpUrl::parse("smtp://u:tls=required@host:587").unwrap();
        assert!(sneaky.may_be_plain_text() && sneaky.has_credentials());
        let starttls = SmtpUrl::parse("smtp://u:p@host:587?tls=required").unwrap();
        assert!(!starttls.may_be_plain_text());
        for bad in [
            "mail.example.com",
            "http://mail.example.com",
            "smtp://host?tls=sometimes",
            "smtps://user:s3cret@",
        ] {
            let err = settings(&[("SMTP_URL", bad)]).unwrap_err().to_string();
            assert!(err.contains("SMTP_URL"), "{bad}: {err}");
            assert!(!err.contains("s3cret"), "{bad}: {err}");
        }
        for bad in ["not a mailbox", "Ops <ops>", "a@b@c"] {
            let err = settings(&[("MAIL_FROM", bad)]).unwrap_err().to_string();
            assert!(err.contains("MAIL_FROM"), "{bad}: {err}");
        }
    }
}
