//! Who the client is, for per-client limits: the peer address, unless the peer is a proxy the
//! operator trusts (`[server] trusted_proxies`), in which case the address that proxy reports. A
//! forwarding header from anyone else is ignored, so no client can pick its own identity.

use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// Addresses or CIDR blocks (`10.0.0.0/8`, `::1`) whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

/// The address with an IPv4-mapped IPv6 address read as the IPv4 address it maps.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_block(ip: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    match (plain(ip), net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl TrustedProxies {
    /// Parses the configured entries; the error names the first that is neither an address nor a
    /// CIDR block.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|entry| {
                let bad = || {
                    format!("server.trusted_proxies: '{entry}' is not an IP address or CIDR block")
                };
                let (addr, bits) = match entry.trim().split_once('/') {
                    Some((addr, bits)) => (addr, Some(bits.parse::<u8>().map_err(|_| bad())?)),
                    None => (entry.trim(), None),
                };
                let ip = plain(addr.parse::<IpAddr>().map_err(|_| bad())?);
                let max = if ip.is_ipv4() { 32 } else { 128 };
                match bits {
                    Some(b) if b > max => Err(bad()),
                    b => Ok((ip, b.unwrap_or(max))),
                }
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|block| in_block(ip, *block))
    }

    /// The client's address. From a trusted peer: the right-most `X-Forwarded-For` entry that is not
    /// itself a trusted proxy (entries further left were written by the client and prove nothing),
    /// else `X-Real-IP`; an entry that is not an IP address ends the walk at the last good one.
    pub fn client(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        let peer = plain(peer.ip());
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut client = None;
        for entry in forwarded.iter().rev() {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                break;
            };
            client = Some(plain(ip));
            if !self.trusts(plain(ip)) {
                break;
            }
        }
        let real_ip = || {
            headers
                .get("x-real-ip")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
                .map(plain)
        };
        client.or_else(real_ip).unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn without_trusted_proxies_forwarding_headers_are_ignored() {
        let none = TrustedProxies::default();
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(
            none.client(&h, peer("10.0.0.9")),
            "10.0.0.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_trusted_proxy_reports_the_right_most_address_it_did_not_write_itself() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The client claims 9.9.9.9; the proxy appended the address it saw, 1.2.3.4.
        let h = headers(&[("x-forwarded-for", "9.9.9.9, 1.2.3.4")]);
        assert_eq!(trusted.client(&h, peer("10.1.1.1")), ip("1.2.3.4"));
        // Two proxies of ours in a row.
        let h = headers(&[("x-forwarded-for", "9.9.9.9, 1.2.3.4, 10.2.2.2")]);
        assert_eq!(trusted.client(&h, peer("::ffff:10.1.1.1")), ip("1.2.3.4"));
        let h = headers(&[("x-real-ip", "1.2.3.4")]);
        assert_eq!(trusted.client(&h, peer("::1")), ip("1.2.3.4"));
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(trusted.client(&h, peer("10.1.1.1")), ip("10.1.1.1"));
        // An untrusted peer's headers count for nothing.
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(trusted.client(&h, peer("11.0.0.1")), ip("11.0.0.1"));
    }

    #[test]
    fn entries_that_are_not_addresses_or_blocks_are_refused() {
        for bad in ["10.0.0.0/33", "::/129", "proxy.example", "10.0.0.0/x"] {
            assert!(TrustedProxies::parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(TrustedProxies::parse(&["0.0.0.0/0".into(), "fd00::/8".into()]).is_ok());
    }
}
