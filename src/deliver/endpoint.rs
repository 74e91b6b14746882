//! Which endpoints deliveries may reach: http(s) only, and (unless allowed) never loopback,
//! link-local, private or otherwise internal addresses, so a subscription cannot make the broker
//! call into the network it runs in (SSRF). An IPv6 address that carries an IPv4 address (mapped,
//! compatible, SIIT, NAT64, 6to4, Teredo) is judged by the IPv4 address it leads to: a translator or
//! relay on the way would deliver to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is internal: loopback, private, link-local, unique-local, shared (CGNAT),
/// unspecified, broadcast, reserved, documentation or multicast, in either family, or an IPv6
/// address that embeds such an IPv4 address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6) || embedded_v4(v6).into_iter().any(is_internal_v4),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b & 0xfe) == 18) // benchmarking
        || a >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside some networks)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only
        // NAT64 local-use prefix (RFC 8215): its translators are the operator's own, and where the
        // IPv4 address sits depends on a prefix length only the operator knows.
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001)
}

/// The IPv4 addresses an IPv6 address leads to, when it carries any.
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    let last = v4(s[6], s[7]);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d and SIIT's IPv4-translated ::ffff:0:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => vec![last],
        // IPv4-compatible ::a.b.c.d (deprecated; `::` and `::1` are judged as IPv6)
        [0, 0, 0, 0, 0, 0, _, _] if !(ip.is_unspecified() || ip.is_loopback()) => vec![last],
        // NAT64 well-known prefix 64:ff9b::/96
        [0x0064, 0xff9b, 0, 0, 0, 0, _, _] => vec![last],
        // 6to4 2002:a.b.c.d::/48
        [0x2002, hi, lo, ..] => vec![v4(hi, lo)],
        // Teredo 2001::/32: the server, and the client (its address stored inverted)
        [0x2001, 0, server_hi, server_lo, ..] => vec![v4(server_hi, server_lo), v4(!s[6], !s[7])],
        _ => vec![],
    }
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
    fn an_ipv6_address_that_carries_an_internal_ipv4_address_is_internal() {
        for internal in [
            "64:ff9b::a9fe:a9fe",   // NAT64 of 169.254.169.254
            "64:ff9b::a00:1",       // NAT64 of 10.0.0.1
            "64:ff9b::7f00:1",      // NAT64 of 127.0.0.1
            "64:ff9b:1::a9fe:a9fe", // NAT64 local use
            "64:ff9b:1::808:808",   // local use, whatever it embeds
            "2002:a9fe:a9fe::",     // 6to4
            "2002:7f00:1::",
            "::a9fe:a9fe", // IPv4-compatible
            "::127.0.0.1",
            "::ffff:0:a9fe:a9fe", // SIIT
            "::ffff:0:7f00:1",
            "::ffff:a9fe:a9fe",                     // IPv4-mapped
            "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1
            "2001:0:a00:1:8000:63bf:f7f7:f7f7",     // Teredo, server 10.0.0.1
            "2001:db8::1",
            "fec0::1",
            "100::1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "64:ff9b::808:808", // NAT64 of 8.8.8.8
            "2002:808:808::1",  // 6to4 of 8.8.8.8
            "::ffff:8.8.8.8",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7", // Teredo, client 8.8.8.8
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn reserved_ipv4_ranges_are_internal() {
        for internal in [
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.1",
            "240.0.0.1",
            "192.88.99.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        assert!(!is_internal("198.20.0.1".parse().unwrap()));
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
