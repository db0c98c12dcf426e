//! Which addresses a plugin's request may connect to, after DNS.
//!
//! A host name on the allow list can still resolve to anything: an
//! attacker who controls `api.example.com`'s DNS (or a rule as wide as
//! `https://*`) could point it at the worker's own Redis on `127.0.0.1`,
//! a cloud metadata service on `169.254.169.254`, or a service on the
//! private network. So every resolved address is checked here, the
//! connection goes to the checked address (never a second lookup that
//! could answer differently), and private, loopback, link-local,
//! multicast, reserved and documentation ranges are refused unless the
//! operator allows a range with `--http-allow-private CIDR`. IPv4 inside
//! IPv6 (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
//! `64:ff9b::/96`, 6to4 `2002::/16`) is judged as the IPv4 it carries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address range such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

/// A range that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "address range {text:?}: {reason}; expected an address or CIDR such as 127.0.0.1/32 or fd00::/8"
)]
pub struct CidrError {
    /// The range as written.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

impl Cidr {
    /// Parse `ADDR/BITS`, or a bare address (all its bits).
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        let fail = |reason: String| CidrError {
            text: text.to_string(),
            reason,
        };
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| fail(format!("{addr:?} is not an IP address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| fail(format!("prefix length {b:?} is not 0-{max}")))?,
        };
        Ok(Cidr { addr, bits })
    }

    /// Whether `ip` is in the range (IPv4 inside IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// The IPv4 address an IPv6 one carries (mapped, compatible, NAT64,
/// 6to4), else the address itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let o = v6.octets();
    let v4 = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    // ::a.b.c.d (deprecated "compatible"), but not :: and ::1 themselves.
    if o[..12].iter().all(|b| *b == 0) && u32::from_be_bytes([o[12], o[13], o[14], o[15]]) > 1 {
        return v4(&o[12..]);
    }
    // 64:ff9b::/96 (NAT64) and 64:ff9b:1::/48 (local NAT64).
    if o[..12] == [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0]
        || o[..6] == [0, 0x64, 0xff, 0x9b, 0, 1]
    {
        return v4(&o[12..]);
    }
    // 2002:AABB:CCDD::/48 (6to4).
    if o[0] == 0x20 && o[1] == 0x02 {
        return v4(&o[2..6]);
    }
    ip
}

/// Why `ip` is not a public unicast address, or none when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, d] = ip.octets();
    if (a, b, c, d) == (168, 63, 129, 16) {
        return Some("a cloud provider's host service (Azure's 168.63.129.16)");
    }
    Some(match (a, b, c) {
        (0, ..) => "this-network (0.0.0.0/8)",
        (10, ..) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
        (127, ..) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local, where cloud metadata services live (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast (224.0.0.0/4)",
        (240..=255, ..) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => "unspecified (::)",
        _ if ip.is_loopback() => "loopback (::1)",
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xfec0..=0xfeff => "site-local (fec0::/10)",
        0xfc00..=0xfdff => "unique local, the private range of IPv6 (fc00::/7)",
        0xff00..=0xffff => "multicast (ff00::/8)",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x2001 if s[1] < 0x0200 => "IETF protocol assignments (2001::/23)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        0x0000 => "reserved (::/8)",
        _ => return None,
    })
}

/// Whether a request may connect to `ip`: a public address, or one in a
/// range the operator allowed. Else why not.
pub fn check(ip: IpAddr, allowed: &[Cidr]) -> Result<(), &'static str> {
    match non_public(ip) {
        Some(_) if allowed.iter().any(|c| c.contains(ip)) => Ok(()),
        Some(kind) => Err(kind),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "168.63.129.16",
        ] {
            assert!(check(ip(bad), &[]).is_err(), "{bad} should be refused");
        }
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(check(ip(good), &[]), Ok(()), "{good}");
        }
    }

    #[test]
    fn an_allowed_range_opens_exactly_that_range() {
        let lo = Cidr::parse("127.0.0.1/32").unwrap();
        assert_eq!(check(ip("127.0.0.1"), &[lo]), Ok(()));
        assert_eq!(check(ip("::ffff:127.0.0.1"), &[lo]), Ok(()));
        assert!(check(ip("127.0.0.2"), &[lo]).is_err());
        assert!(check(ip("169.254.169.254"), &[lo]).is_err());
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.255.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        let odd = Cidr::parse("172.16.0.0/12").unwrap();
        assert!(odd.contains(ip("172.31.0.1")));
        assert!(!odd.contains(ip("172.32.0.1")));
    }

    #[test]
    fn a_bad_range_names_itself() {
        for bad in ["10.0.0.0/33", "fd00::/129", "nope/8", "10.0.0.0/x"] {
            let e = Cidr::parse(bad).unwrap_err();
            assert_eq!(e.text, bad);
        }
    }
}
