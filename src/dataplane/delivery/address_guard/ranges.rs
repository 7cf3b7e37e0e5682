//! Which addresses are not the public Internet, and what each such range is called.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A blocked range: what it is (read after "is": `loopback`, `link-local`, ...) and its CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockedRange {
    pub kind: &'static str,
    pub cidr: &'static str,
}

pub(super) struct V4Range {
    pub(super) net: u32,
    pub(super) prefix: u32,
    pub(super) range: BlockedRange,
}

pub(super) struct V6Range {
    pub(super) net: u128,
    pub(super) prefix: u32,
    pub(super) range: BlockedRange,
}

const fn v4(net: [u8; 4], prefix: u32, kind: &'static str, cidr: &'static str) -> V4Range {
    V4Range {
        net: u32::from_be_bytes(net),
        prefix,
        range: BlockedRange { kind, cidr },
    }
}

const fn v6(net: u128, prefix: u32, kind: &'static str, cidr: &'static str) -> V6Range {
    V6Range {
        net,
        prefix,
        range: BlockedRange { kind, cidr },
    }
}

/// Every IPv4 range that is not the public Internet. Most specific first: the first match names
/// the range (255.255.255.255 is broadcast before it is reserved).
pub(super) const BLOCKED_V4: &[V4Range] = &[
    v4([0, 0, 0, 0], 8, "unspecified", "0.0.0.0/8"),
    v4([10, 0, 0, 0], 8, "private", "10.0.0.0/8"),
    v4([100, 64, 0, 0], 10, "carrier-grade NAT", "100.64.0.0/10"),
    v4([127, 0, 0, 0], 8, "loopback", "127.0.0.0/8"),
    v4([169, 254, 0, 0], 16, "link-local", "169.254.0.0/16"),
    v4([172, 16, 0, 0], 12, "private", "172.16.0.0/12"),
    v4([192, 0, 0, 0], 24, "reserved", "192.0.0.0/24"),
    v4([192, 0, 2, 0], 24, "documentation", "192.0.2.0/24"),
    v4([192, 88, 99, 0], 24, "reserved", "192.88.99.0/24"),
    v4([192, 168, 0, 0], 16, "private", "192.168.0.0/16"),
    v4([198, 18, 0, 0], 15, "benchmarking", "198.18.0.0/15"),
    v4([198, 51, 100, 0], 24, "documentation", "198.51.100.0/24"),
    v4([203, 0, 113, 0], 24, "documentation", "203.0.113.0/24"),
    v4([224, 0, 0, 0], 4, "multicast", "224.0.0.0/4"),
    v4([255, 255, 255, 255], 32, "broadcast", "255.255.255.255/32"),
    v4([240, 0, 0, 0], 4, "reserved", "240.0.0.0/4"),
];

const UNSPECIFIED_V6: BlockedRange = BlockedRange {
    kind: "unspecified",
    cidr: "::/128",
};
const LOOPBACK_V6: BlockedRange = BlockedRange {
    kind: "loopback",
    cidr: "::1/128",
};

/// IPv6 ranges that are not the public Internet, apart from `::`, `::1` and the forms that
/// embed an IPv4 address (those are judged by the IPv4 address, see [`embedded_v4`]). Most
/// specific first; together the entries cover everything outside global unicast 2000::/3.
pub(super) const BLOCKED_V6: &[V6Range] = &[
    v6(
        0x0064_ff9b_0001 << 80,
        48,
        "local-use NAT64",
        "64:ff9b:1::/48",
    ),
    v6(0x0100 << 112, 64, "discard-only", "100::/64"),
    v6(0x2001_0000 << 96, 32, "a Teredo tunnel", "2001::/32"),
    v6(0x2001_0002 << 96, 48, "benchmarking", "2001:2::/48"),
    v6(0x2001_0db8 << 96, 32, "documentation", "2001:db8::/32"),
    v6(0x3fff << 112, 20, "documentation", "3fff::/20"),
    v6(0xfc00 << 112, 7, "unique-local", "fc00::/7"),
    v6(0xfe80 << 112, 10, "link-local", "fe80::/10"),
    v6(0xfec0 << 112, 10, "site-local", "fec0::/10"),
    v6(0xff00 << 112, 8, "multicast", "ff00::/8"),
    // Not allocated for unicast at all (IANA): the rest of the space outside 2000::/3.
    v6(0, 8, "reserved", "::/8"),
    v6(0x0100 << 112, 8, "reserved", "100::/8"),
    v6(0x0200 << 112, 7, "reserved", "200::/7"),
    v6(0x0400 << 112, 6, "reserved", "400::/6"),
    v6(0x0800 << 112, 5, "reserved", "800::/5"),
    v6(0x1000 << 112, 4, "reserved", "1000::/4"),
    v6(0x4000 << 112, 2, "reserved", "4000::/2"),
    v6(0x8000 << 112, 2, "reserved", "8000::/2"),
    v6(0xc000 << 112, 3, "reserved", "c000::/3"),
    v6(0xe000 << 112, 4, "reserved", "e000::/4"),
    v6(0xf000 << 112, 5, "reserved", "f000::/5"),
    v6(0xf800 << 112, 6, "reserved", "f800::/6"),
    v6(0xfe00 << 112, 9, "reserved", "fe00::/9"),
];

/// Whether the top `prefix` bits of `addr` and `net` agree (`BITS` wide).
const fn in_prefix<const BITS: u32>(addr: u128, net: u128, prefix: u32) -> bool {
    prefix == 0 || (addr ^ net) >> (BITS - prefix) == 0
}

/// Why `ip` is refused by default, or `None` for a public address. Pure and allocation-free:
/// it runs for every resolved address.
pub fn blocked_range(ip: IpAddr) -> Option<BlockedRange> {
    match ip {
        IpAddr::V4(ip) => blocked_v4(ip),
        IpAddr::V6(ip) => blocked_v6(ip),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<BlockedRange> {
    let addr = u32::from(ip) as u128;
    BLOCKED_V4
        .iter()
        .find(|r| in_prefix::<32>(addr, r.net as u128, r.prefix))
        .map(|r| r.range)
}

fn blocked_v6(ip: Ipv6Addr) -> Option<BlockedRange> {
    let addr = u128::from(ip);
    // Before the embedded forms: both lie inside the IPv4-compatible range ::/96.
    match addr {
        0 => return Some(UNSPECIFIED_V6),
        1 => return Some(LOOPBACK_V6),
        _ => {}
    }
    if let Some((_, v4)) = embedded_v4(ip) {
        return blocked_v4(v4);
    }
    BLOCKED_V6
        .iter()
        .find(|r| in_prefix::<128>(addr, r.net, r.prefix))
        .map(|r| r.range)
}

/// The IPv4 address an IPv6 address stands for, with the name of the form: packets to these
/// end up at the IPv4 address (through the dual-stack socket, NAT64 or a 6to4 relay), so that
/// is what must be judged. `::` and `::1` are not IPv4-compatible addresses.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<(&'static str, Ipv4Addr)> {
    let addr = u128::from(ip);
    let low = Ipv4Addr::from(addr as u32);
    match addr >> 32 {
        0xffff => Some(("IPv4-mapped", low)),
        0 if addr > 1 => Some(("IPv4-compatible", low)),
        0xffff_0000 => Some(("IPv4-translated", low)),
        0x0064_ff9b_0000_0000_0000_0000 => Some(("NAT64", low)),
        _ if addr >> 112 == 0x2002 => Some(("6to4", Ipv4Addr::from((addr >> 80) as u32))),
        _ => None,
    }
}
