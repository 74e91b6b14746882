//! Which endpoints deliveries may reach: http(s) only, and (unless allowed) never loopback,
//! link-local, private or otherwise internal addresses, so a subscription cannot make the broker
//! call into the network it runs in (SSRF).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is internal: loopback, private, link-local, unique-local, shared (CGNAT),
/// unspecified, broadcast, documentation or multicast.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// The host and port of an http(s) URL, or why it is not one.
pub fn http_target(url: &str) -> Result<(String, u16), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let port = match parsed.scheme() {
        "http" => 80,
        "https" => 443,
        other => return Err(format!("the scheme {other} is not http or https")),
    };
    let host = parsed.host_str().ok_or("the URL has no host")?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        parsed.port().unwrap_or(port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised_in_both_families() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["8.8.8.8", "151.101.1.1", "2001:4860:4860::8888"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn only_http_and_https_urls_name_a_target() {
        assert_eq!(
            http_target("https://example.com/hook").unwrap(),
            ("example.com".into(), 443)
        );
        assert_eq!(
            http_target("http://[::1]:8080/x").unwrap(),
            ("::1".into(), 8080)
        );
        assert!(http_target("ftp://example.com/").is_err());
        assert!(http_target("file:///etc/passwd").is_err());
        assert!(http_target("not a url").is_err());
    }
}
