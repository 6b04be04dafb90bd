//! Where a webhook may be sent (SPEC §12). Tenants name the URL, so Tenantry must not become a
//! way to probe the operator's network: targets on loopback, private, link-local (the cloud
//! metadata address 169.254.169.254), shared, multicast or otherwise non-public addresses are
//! refused unless `OUTBOUND_WEBHOOKS_ALLOW_PRIVATE=true`, both when the endpoint is saved and
//! at every connection (the resolver below filters what DNS answers, so a name that later
//! resolves to a private address is refused too; there is no second look-up to race).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::Uri;
use hyper_util::client::legacy::connect::dns::Name;

/// What the settings allow.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `https` only (everywhere but development).
    pub https_only: bool,
    pub allow_private: bool,
}

/// Why a URL is refused, as a sentence for the API's `BAD_USER_INPUT`.
pub fn check_url(raw: &str, policy: Policy) -> Result<Uri, String> {
    if raw.len() > 2048 {
        return Err("url is longer than 2048 characters".into());
    }
    let uri: Uri = raw
        .parse()
        .map_err(|_| "url is not an absolute URL".to_string())?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if !policy.https_only => {}
        Some("http") => return Err("url must use https".into()),
        _ => return Err("url must be an http(s) URL".into()),
    }
    let Some(authority) = uri.authority() else {
        return Err("url has no host".into());
    };
    if authority.as_str().contains('@') {
        return Err("url may not carry credentials".into());
    }
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err("url has no host".into());
    }
    if let Some(ip) = literal_ip(host) {
        if !policy.allow_private && !is_public(ip) {
            return Err(refused(ip));
        }
    } else if !policy.allow_private && is_local_name(host) {
        return Err(format!("url host {host} is a local name"));
    }
    Ok(uri)
}

/// The same check after DNS: every address the name has must be public. The answer names no
/// address (it would tell tenants what the operator's internal names resolve to), and the
/// look-up has a deadline (a slow name server cannot hold the request).
pub async fn check_resolves(uri: &Uri, policy: Policy) -> Result<(), String> {
    let host = uri.host().unwrap_or_default();
    if policy.allow_private || literal_ip(host).is_some() {
        return Ok(());
    }
    let lookup = tokio::net::lookup_host((host, 443));
    let addrs = match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(_)) => return Err(format!("url host {host} does not resolve")),
        Err(_) => return Err(format!("url host {host} did not resolve within 5 s")),
    };
    for a in addrs {
        if !is_public(a.ip()) {
            tracing::debug!(host, ip = %a.ip(), "webhook target resolves to a non-public address");
            return Err(format!(
                "url host {host} resolves to a private, loopback or link-local address (refused \
                 unless OUTBOUND_WEBHOOKS_ALLOW_PRIVATE=true)"
            ));
        }
    }
    Ok(())
}

fn refused(ip: IpAddr) -> String {
    format!(
        "url points at {ip}, a private, loopback or link-local address (refused unless \
         OUTBOUND_WEBHOOKS_ALLOW_PRIVATE=true)"
    )
}

/// An IP literal host (`[::1]` in URLs).
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn is_local_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h.ends_with(".local")
        || h.ends_with(".internal")
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// Global unicast (2000::/3) outside the special-purpose blocks; everything else (IPv4-
/// compatible and -translated forms, discard, unique and link-local, multicast) is refused.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    (s[0] & 0xe000) == 0x2000
        && !(s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments (Teredo, ORCHID, ..)
        && !(s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        && s[0] != 0x2002 // 6to4 (embeds IPv4)
        && !(s[0] == 0x3fff && s[1] < 0x1000) // documentation (2024)
}

/// hyper's DNS step with the policy applied: only public addresses are returned (all of
/// them, unless private ones are allowed); a name with none fails the connection.
#[derive(Clone)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower::Service<Name> for GuardedResolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{} has no public address", name.as_str()),
                ));
            }
            Ok(found.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy {
        https_only: true,
        allow_private: false,
    };

    #[test]
    fn private_loopback_and_link_local_targets_are_refused() {
        for url in [
            "https://127.0.0.1/hook",
            "https://127.9.9.9:8443/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::127.0.0.1]/",
            "https://[::ffff:0:7f00:1]/",
            "https://[100::1]/",
            "https://[2001::1]/",
            "https://[64:ff9b::7f00:1]/",
            "https://[::]/",
            "https://localhost/",
            "https://metadata.google.internal/",
        ] {
            assert!(check_url(url, STRICT).is_err(), "{url} must be refused");
        }
        assert!(check_url("https://93.184.215.14/hook", STRICT).is_ok());
        assert!(check_url(
            "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook",
            STRICT
        )
        .is_ok());
        assert!(check_url("https://hooks.example.com/tenantry", STRICT).is_ok());
    }

    #[test]
    fn scheme_credentials_and_the_override() {
        assert_eq!(
            check_url("http://hooks.example.com/", STRICT).unwrap_err(),
            "url must use https"
        );
        assert!(check_url("ftp://hooks.example.com/", STRICT).is_err());
        assert!(check_url("/relative", STRICT).is_err());
        assert!(check_url("https://user:pw@hooks.example.com/", STRICT).is_err());
        let open = Policy {
            https_only: false,
            allow_private: true,
        };
        assert!(check_url("http://127.0.0.1:9000/hook", open).is_ok());
    }
}
