//! The frame every notification mail shares: the tenant's branding (name, colour, logo) around
//! one event's content, as a plain-text part and an HTML part. Every value that reaches the
//! HTML is escaped here, and branding is checked before use (a colour must be `#rgb` or
//! `#rrggbb`, a logo an `http(s)` URL); anything else is dropped for the default, never
//! interpolated. Pure: no I/O.

use uuid::Uuid;

/// The colour of mail whose tenant has none (or an unusable one): the seeded default of
/// `branding.primary_color`.
pub const DEFAULT_COLOR: &str = "#4f46e5";

/// The longest tenant name, fact or paragraph put into a mail (characters).
const MAX_NAME: usize = 120;
const MAX_VALUE: usize = 500;
const MAX_URL: usize = 2048;

/// Whose mail it is and how it looks; built through [`Branding::new`], which checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branding {
    pub tenant_name: String,
    /// `#rgb` or `#rrggbb`.
    pub color: String,
    /// An `http(s)` URL of printable ASCII.
    pub logo_url: Option<String>,
}

impl Branding {
    /// Keeps a colour and a logo only when they are safe to put into HTML and CSS.
    pub fn new(tenant_name: &str, color: Option<&str>, logo_url: Option<&str>) -> Branding {
        Branding {
            tenant_name: one_line(tenant_name, MAX_NAME),
            color: color
                .and_then(valid_color)
                .unwrap_or_else(|| DEFAULT_COLOR.to_owned()),
            logo_url: logo_url.and_then(valid_logo_url),
        }
    }
}

/// One event's words: what the frame is filled with. Plain text; escaping is the frame's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub subject: String,
    pub heading: String,
    pub paragraphs: Vec<String>,
    /// Label and value, shown as a small table.
    pub facts: Vec<(&'static str, String)>,
}

/// A rendered mail: subject, plain-text part, HTML part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// `#rgb` or `#rrggbb` (hex digits), lower-cased; anything else is refused.
pub fn valid_color(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let hex = raw.strip_prefix('#')?;
    let ok = matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit());
    ok.then(|| raw.to_ascii_lowercase())
}

/// An absolute `http://` or `https://` URL with a host, printable ASCII only (no spaces,
/// quotes or angle brackets: those would be escaped anyway, but a logo URL has no use for
/// them), at most 2048 characters.
pub fn valid_logo_url(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let lower = raw.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let ok = !host.is_empty()
        && raw.len() <= MAX_URL
        && raw
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\'));
    ok.then(|| raw.to_owned())
}

/// HTML text and attribute escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of at most `max` characters: control characters (newlines included) become
/// spaces, runs of spaces collapse, a cut ends with "…".
pub fn one_line(s: &str, max: usize) -> String {
    let spaced: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let joined = words.join(" ");
    if joined.chars().count() <= max {
        joined
    } else {
        let mut cut: String = joined.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Fills the frame: `[<tenant>] <subject>`, the plain-text part and the HTML part (which shows
/// the same words, escaped, in the tenant's colour and with its logo).
pub fn render(content: &Content, brand: &Branding, event_id: Uuid) -> Mail {
    let subject = one_line(&format!("[{}] {}", brand.tenant_name, content.subject), 200);
    let heading = one_line(&content.heading, MAX_VALUE);
    let paragraphs: Vec<String> = content
        .paragraphs
        .iter()
        .map(|p| one_line(p, 2 * MAX_VALUE))
        .collect();
    let facts: Vec<(&str, String)> = content
        .facts
        .iter()
        .map(|(k, v)| (*k, one_line(v, MAX_VALUE)))
        .collect();
    let footer = format!(
        "You receive this as an owner or admin of {} on Tenantry. Tenant admins can turn \
         these mails off with the setting notifications.email_enabled.",
        brand.tenant_name
    );
    Mail {
        subject,
        text: text_part(brand, &heading, &paragraphs, &facts, &footer, event_id),
        html: html_part(brand, &heading, &paragraphs, &facts, &footer, event_id),
    }
}

fn text_part(
    brand: &Branding,
    heading: &str,
    paragraphs: &[String],
    facts: &[(&str, String)],
    footer: &str,
    event_id: Uuid,
) -> String {
    let mut t = format!("{}\n\n{heading}\n\n", brand.tenant_name);
    for p in paragraphs {
        t.push_str(p);
        t.push_str("\n\n");
    }
    for (k, v) in facts {
        t.push_str(&format!("{k}: {v}\n"));
    }
    if !facts.is_empty() {
        t.push('\n');
    }
    t.push_str(&format!("-- \n{footer}\nEvent id: {event_id}\n"));
    t
}

fn html_part(
    brand: &Branding,
    heading: &str,
    paragraphs: &[String],
    facts: &[(&str, String)],
    footer: &str,
    event_id: Uuid,
) -> String {
    let color = &brand.color; // checked: `#` and hex digits only
    let name = escape(&brand.tenant_name);
    let logo = match &brand.logo_url {
        Some(url) => format!(
            r#"<img src="{}" alt="{name}" height="32" style="height:32px;vertical-align:middle;margin-right:12px;border:0">"#,
            escape(url)
        ),
        None => String::new(),
    };
    let mut body = String::new();
    for p in paragraphs {
        body.push_str(&format!(
            "<p style=\"margin:0 0 16px;line-height:1.5\">{}</p>\n",
            escape(p)
        ));
    }
    if !facts.is_empty() {
        body.push_str("<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" style=\"border-collapse:collapse;margin:0 0 16px\">\n");
        for (k, v) in facts {
            body.push_str(&format!(
                "<tr><td style=\"padding:4px 16px 4px 0;color:#6b7280\">{}</td><td style=\"padding:4px 0\">{}</td></tr>\n",
                escape(k),
                escape(v)
            ));
        }
        body.push_str("</table>\n");
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{title}</title></head>
<body style="margin:0;padding:0;background:#f3f4f6;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#111827">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse"><tr><td align="center" style="padding:24px">
<table role="presentation" width="600" cellpadding="0" cellspacing="0" style="border-collapse:collapse;max-width:600px;width:100%;background:#ffffff">
<tr><td style="background:{color};padding:16px 24px;color:#ffffff;font-size:18px;font-weight:bold">{logo}{name}</td></tr>
<tr><td style="padding:24px">
<h1 style="margin:0 0 16px;font-size:20px;color:{color}">{title}</h1>
{body}</td></tr>
<tr><td style="padding:16px 24px;border-top:1px solid #e5e7eb;font-size:12px;color:#6b7280">{footer}<br>Event id: {event_id}</td></tr>
</table>
</td></tr></table>
</body>
</html>
"#,
        title = escape(heading),
        footer = escape(footer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> Content {
        Content {
            subject: "Storage reached 90%".into(),
            heading: "Storage <b>reached</b> 90%".into(),
            paragraphs: vec!["Used 9 of 10 \"units\" & more.".into()],
            facts: vec![("Resource", "<script>alert(1)</script>".into())],
        }
    }

    #[test]
    fn a_hostile_tenant_name_and_values_are_escaped_in_html() {
        let brand = Branding::new("<script>alert('x')</script> & Co", None, None);
        let mail = render(&content(), &brand, Uuid::nil());
        assert!(!mail.html.contains("<script>"), "{}", mail.html);
        assert!(!mail.html.contains("<b>"), "{}", mail.html);
        assert!(mail
            .html
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co"));
        assert!(mail.html.contains("&quot;units&quot; &amp; more."));
        // The plain-text part carries the words as they are.
        assert!(mail.text.contains("<script>alert('x')</script> & Co"));
        assert!(mail.text.contains("Resource: <script>alert(1)</script>"));
        assert!(mail
            .text
            .contains("Event id: 00000000-0000-0000-0000-000000000000"));
        assert_eq!(
            mail.subject,
            "[<script>alert('x')</script> & Co] Storage reached 90%"
        );
    }

    #[test]
    fn bad_colours_and_logo_urls_are_dropped() {
        for bad in [
            "red",
            "#12345",
            "#12345g",
            "#fff;background:url(x)",
            "#fff\" onload=\"x",
            "",
        ] {
            assert_eq!(valid_color(bad), None, "{bad}");
            let b = Branding::new("T", Some(bad), None);
            assert_eq!(b.color, DEFAULT_COLOR);
        }
        assert_eq!(valid_color("#ABCDEF").as_deref(), Some("#abcdef"));
        assert_eq!(valid_color("#0f0").as_deref(), Some("#0f0"));
        for bad in [
            "javascript:alert(1)",
            "data:image/png;base64,xx",
            "//cdn.example.com/logo.png",
            "https://",
            "https://cdn.example.com/a logo.png",
            "https://cdn.example.com/\"onerror=\"x",
            "https://cdn.example.com/<x>",
        ] {
            assert_eq!(valid_logo_url(bad), None, "{bad}");
        }
        let ok = "https://cdn.example.com/logo.png?v=1&s=2";
        let b = Branding::new("T", Some("#112233"), Some(ok));
        let mail = render(&content(), &b, Uuid::nil());
        assert!(mail
            .html
            .contains(r#"src="https://cdn.example.com/logo.png?v=1&amp;s=2""#));
        assert!(mail.html.contains("background:#112233"));
        let plain = render(
            &content(),
            &Branding::new("T", Some("red"), None),
            Uuid::nil(),
        );
        assert!(plain.html.contains("background:#4f46e5") && !plain.html.contains("<img"));
    }

    #[test]
    fn values_are_one_line_and_bounded() {
        assert_eq!(one_line("a\r\nBcc: x@y.z\n b", 100), "a Bcc: x@y.z b");
        assert_eq!(one_line(&"x".repeat(10), 5), "xxxx…");
        let brand = Branding::new(&"N".repeat(500), None, None);
        assert_eq!(brand.tenant_name.chars().count(), MAX_NAME);
    }
}
