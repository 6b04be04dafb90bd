//! GraphiQL, served whole by this binary: the page at `GET /graphql` (for browsers) and its
//! files at `GET /graphql/assets/{name}`: GraphiQL and React as vendored from npm in
//! `assets/graphiql/` (versions, licences and checksums in its README), plus the page's own
//! script and style next to this file, all embedded at compile time. The page makes the
//! browser fetch nothing from another origin, and its Content-Security-Policy forbids it to.
//! Both are off (404) when `GRAPHIQL_ENABLED` is false, the default in production.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::HttpState;

/// Where the page's files are served; `page.html` refers to them by this prefix.
pub const ASSETS_ROUTE: &str = "/graphql/assets/{name}";

const PAGE: &str = include_str!("page.html");

/// Vendored files are named with their version, so a browser may keep them for a year; the
/// page's own files change with the binary, so the browser revalidates them.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

struct Asset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    cache: &'static str,
}

macro_rules! vendored {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            body: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/graphiql/",
                $name
            )),
            content_type: $type,
            cache: IMMUTABLE,
        }
    };
}

const ASSETS: &[Asset] = &[
    vendored!("graphiql-3.9.0.min.js", JS),
    vendored!("graphiql-3.9.0.min.css", CSS),
    vendored!("react-18.3.1.production.min.js", JS),
    vendored!("react-dom-18.3.1.production.min.js", JS),
    Asset {
        name: "page.js",
        body: include_bytes!("page.js"),
        content_type: JS,
        cache: REVALIDATE,
    },
    Asset {
        name: "page.css",
        body: include_bytes!("page.css"),
        content_type: CSS,
        cache: REVALIDATE,
    },
];

/// The page, when the request comes from a browser (`Accept: text/html`); `None` otherwise,
/// and the GET is a GraphQL query.
pub fn page(st: &HttpState, headers: &HeaderMap) -> Option<Response> {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return None;
    }
    if !st.app.settings.graphql.graphiql {
        return Some((StatusCode::NOT_FOUND, "GraphiQL is disabled").into_response());
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let csp = content_security_policy(host);
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, REVALIDATE),
        ],
        PAGE,
    )
        .into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(resp)
}

/// `GET /graphql/assets/{name}`: one of the page's files; any other name is 404.
pub async fn asset(State(st): State<HttpState>, Path(name): Path<String>) -> Response {
    let found = ASSETS.iter().find(|a| a.name == name);
    match found {
        Some(a) if st.app.settings.graphql.graphiql => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, a.cache),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            a.body,
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Scripts and styles only from this origin, no inline script, no eval; requests only to this
/// origin and its WebSocket endpoint. GraphiQL's fonts are `data:` URLs inside its CSS. Its
/// dialogs (settings, shortcuts) add `<style>` elements whose text varies with the window's
/// scrollbar, so no hash can name them: styles may be inline, scripts never.
fn content_security_policy(host: Option<&str>) -> String {
    // 'self' covers ws:/wss: of the same host in CSP Level 3, but not in every browser: name
    // the socket too, when the Host header is a plain host[:port] that is safe to repeat.
    let sockets = host
        .filter(|h| is_plain_authority(h))
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         font-src 'self' data:; img-src 'self' data:; connect-src 'self'{sockets}; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// A Host header made of a name or an IP literal and an optional port, nothing else.
fn is_plain_authority(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_served() {
        let named: Vec<&str> = PAGE
            .split("\"/graphql/assets/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(named.len(), ASSETS.len(), "{named:?}");
        for name in named {
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "{name} is not served"
            );
        }
    }

    #[test]
    fn the_page_has_no_inline_script_and_nothing_from_elsewhere() {
        assert!(!PAGE.contains("<script>"));
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://") && !PAGE.contains("//cdn"));
        for a in ASSETS.iter().filter(|a| a.cache == REVALIDATE) {
            let text = std::str::from_utf8(a.body).unwrap();
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn the_policy_names_the_socket_only_for_a_plain_host() {
        let csp = content_security_policy(Some("127.0.0.1:8080"));
        assert!(csp.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"));
        assert!(csp.contains("script-src 'self';"));
        for odd in ["evil.com; script-src *", "a b", "", "x\"y"] {
            let csp = content_security_policy(Some(odd));
            assert!(csp.contains("connect-src 'self'; "), "{odd}: {csp}");
        }
        assert!(content_security_policy(None).contains("connect-src 'self'; "));
    }
}
