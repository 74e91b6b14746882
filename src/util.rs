//! Small helpers shared across the server.

pub use broker_actors::upload::sha256_hex;

/// Whether `ip` is a loopback address, also in its IPv4-mapped IPv6 form (`::ffff:127.0.0.1`, as a
/// dual-stack listener on `[::]` sees IPv4 clients).
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        v4 => v4.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_recognised_in_every_form_a_listener_sees() {
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(super::is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "::ffff:10.0.0.1", "::2", "2001:db8::1"] {
            assert!(!super::is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
