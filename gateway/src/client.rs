//! Who a request comes from, for per-client limits: the TCP peer, or, when
//! the peer is one of the operator's trusted proxies, the address that
//! proxy put in `X-Forwarded-For`.
//!
//! `X-Forwarded-For` is read right to left: each trusted proxy appends the
//! address it received the request from, so the right-most address that is
//! not itself a trusted proxy is the client. Everything left of it was
//! written by the client (or anyone before it) and is never believed. A
//! peer that is not a trusted proxy is the client, whatever its headers
//! say. A client is an IPv4 address, or an IPv6 /64 (one subscriber's
//! network: an attacker with one /64 has 2^64 addresses).

use std::net::{IpAddr, Ipv6Addr};

/// What a per-client limit counts: one IPv4 address or one IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    /// The first 64 bits of the address.
    V6Net(u64),
}

impl ClientKey {
    /// The key of `addr` (an IPv4-mapped IPv6 address is its IPv4 one).
    #[must_use]
    pub fn of(addr: IpAddr) -> ClientKey {
        match addr {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// An address range (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or CIDR range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    /// Whether `addr` is in the range (an IPv4-mapped IPv6 address is
    /// compared as IPv4).
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The client of a request from `peer` with these `X-Forwarded-For`
/// values (in header order), given the trusted proxies.
#[must_use]
pub fn client_addr<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let trusted_addr = |a: IpAddr| trusted.iter().any(|c| c.contains(a));
    if !trusted_addr(peer) {
        return peer;
    }
    let mut client = peer;
    // Right to left over every value and every comma-separated entry.
    for value in forwarded_for.rev() {
        for entry in value.rsplit(',') {
            let Some(addr) = parse_entry(entry) else {
                // Garbage where a proxy should have written an address:
                // nothing left of it can be believed.
                return client;
            };
            if !trusted_addr(addr) {
                return addr;
            }
            client = addr;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly `[v6]:port` or
/// `v4:port` as some proxies write it.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest
            .split_once(']')?
            .0
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6);
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn ranges_parse_and_contain() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("::1")));
        for bad in ["10.0.0.0/33", "fe80::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let got = client_addr(ip("203.0.113.9"), ["1.2.3.4"].into_iter(), &trusted);
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_address_is_the_client() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        // The client forged "6.6.6.6"; its real address was appended by
        // the first proxy, then the second proxy appended the first.
        let got = client_addr(
            ip("10.0.0.2"),
            ["6.6.6.6, 198.51.100.4", "10.0.0.1"].into_iter(),
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.4"));
        // Ports and brackets as some proxies write them.
        let got = client_addr(ip("10.0.0.2"), ["[2001:db8::5]:443"].into_iter(), &trusted);
        assert_eq!(got, ip("2001:db8::5"));
        let got = client_addr(ip("10.0.0.2"), ["198.51.100.4:5000"].into_iter(), &trusted);
        assert_eq!(got, ip("198.51.100.4"));
        // No header: the proxy itself.
        let got = client_addr(ip("10.0.0.2"), std::iter::empty(), &trusted);
        assert_eq!(got, ip("10.0.0.2"));
        // Garbage stops the walk at the last address believed.
        let got = client_addr(
            ip("10.0.0.2"),
            ["1.1.1.1, junk, 10.0.0.7"].into_iter(),
            &trusted,
        );
        assert_eq!(got, ip("10.0.0.7"));
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_v4_its_v4() {
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
    }
}
