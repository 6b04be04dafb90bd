//! Sending: the SMTP transport built once from `SMTP_URL` (or none: mail is logged), the MIME
//! message (multipart/alternative, plain text then HTML) with the headers that let a receiver
//! recognise a repeated delivery (`Message-ID` and `X-Tenantry-Event-Id` from the event id),
//! and the sentence a failure is reported with (never the URL or its password).

use std::time::Duration;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::layout::Mail;
use super::OutboxEvent;
use crate::config::Settings;

/// One SMTP command's wait (lettre's, per command).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// The whole conversation's: connect, TLS, EHLO, AUTH, the message, QUIT.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The mail sender, one per process (`App::mailer`).
pub struct Mailer {
    /// `None` without `SMTP_URL`: mail is logged and counts as delivered.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    /// `smtp://host:port`, for logs.
    target: Option<String>,
}

impl Mailer {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Mailer> {
        let transport = match &settings.smtp_url {
            None => None,
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|e| anyhow::anyhow!("SMTP_URL cannot be used: {e}"))?
                    .timeout(Some(COMMAND_TIMEOUT))
                    .build(),
            ),
        };
        Ok(Mailer {
            transport,
            from: settings.mail_from.clone(),
            target: settings.smtp_url.as_ref().map(|u| u.redacted()),
        })
    }

    /// Whether mail is sent (`SMTP_URL` set) rather than logged.
    pub fn sends(&self) -> bool {
        self.transport.is_some()
    }

    /// The sender (`MAIL_FROM`).
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// Builds the message for `to` (all in `To`: they are the tenant's owners and admins, who
    /// see each other in the member list anyway).
    pub fn message(
        &self,
        to: &[Address],
        mail: &Mail,
        event: &OutboxEvent,
    ) -> Result<Message, String> {
        let builder = to.iter().fold(Message::builder(), |b, a| {
            b.to(Mailbox::new(None, a.clone()))
        });
        builder
            .from(self.from.clone())
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{}@{}>", event.id, self.from.email.domain())))
            .header(EventIdHeader(event.id.to_string()))
            .header(EventTypeHeader(event.event_type.as_str().to_owned()))
            .header(AutoSubmitted)
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    /// Sends (or, without `SMTP_URL`, logs) the message; `Err` is a sentence for the delivery
    /// log and the worker retries.
    pub async fn send(
        &self,
        to: &[Address],
        mail: &Mail,
        event: &OutboxEvent,
    ) -> Result<(), String> {
        let message = self.message(to, mail, event)?;
        let Some(transport) = &self.transport else {
            let to: Vec<String> = to.iter().map(ToString::to_string).collect();
            tracing::info!(
                event_id = %event.id, event_type = event.event_type.as_str(),
                tenant_id = %event.tenant_id, to = %to.join(", "), subject = %mail.subject,
                "mail logged, not sent (no SMTP_URL)"
            );
            return Ok(());
        };
        match tokio::time::timeout(SEND_TIMEOUT, transport.send(message)).await {
            Ok(Ok(_)) => {
                tracing::info!(event_id = %event.id, event_type = event.event_type.as_str(),
                    tenant_id = %event.tenant_id, recipients = to.len(),
                    server = self.target.as_deref().unwrap_or_default(), "mail sent");
                Ok(())
            }
            Ok(Err(e)) => Err(failure(&e)),
            Err(_) => Err(format!(
                "the mail server did not finish within {}s",
                SEND_TIMEOUT.as_secs()
            )),
        }
    }
}

/// How a permanent refusal (5xx) reads: [`super::deliver`] tells it from a retryable failure.
pub const REJECTED: &str = "the mail server rejected the message";

/// A short sentence for a failed send: the kind, the SMTP code and the server's words (one
/// line, bounded). lettre's errors carry no URL or password.
fn failure(e: &lettre::transport::smtp::Error) -> String {
    let detail: String = e
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(240)
        .collect();
    let kind = if e.is_transient() {
        "the mail server refused for now"
    } else if e.is_permanent() {
        REJECTED
    } else if e.is_timeout() {
        "the mail server timed out"
    } else if e.is_tls() {
        "TLS with the mail server failed"
    } else {
        "cannot talk to the mail server"
    };
    format!("{kind}: {detail}")
}

macro_rules! text_header {
    ($ty:ident, $name:literal) => {
        #[derive(Debug, Clone)]
        struct $ty(String);

        impl Header for $ty {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok($ty(s.to_owned()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

text_header!(EventIdHeader, "X-Tenantry-Event-Id");
text_header!(EventTypeHeader, "X-Tenantry-Event-Type");

/// `Auto-Submitted: auto-generated` (RFC 3834): out-of-office replies stay away.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}
