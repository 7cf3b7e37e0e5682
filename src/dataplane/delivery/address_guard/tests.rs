use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::{Host, Url};

use super::{
    lookup::is_localhost,
    ranges::{BLOCKED_V4, BLOCKED_V6},
    *,
};
use crate::dataplane::delivery::egress_proxy::EgressProxy;

const PUBLIC_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34));
const PUBLIC_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0, 0, 0, 0, 0, 0x1111));

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// A resolver that answers from a table and knows nothing else: no test asks real DNS.
struct FakeLookup(HashMap<&'static str, Vec<IpAddr>>);

impl Lookup for FakeLookup {
    fn lookup(&self, host: String) -> LookupFuture {
        let answer =
            self.0.get(host.as_str()).cloned().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "unknown to the test resolver")
            });
        Box::pin(async move { answer })
    }
}

fn fake_dns() -> FakeLookup {
    FakeLookup(HashMap::from([
        ("evil.example", vec![ip("10.0.0.5")]),
        ("metadata.example", vec![ip("169.254.169.254")]),
        ("ec2-v6.example", vec![ip("fd00:ec2::254")]),
        ("mapped.example", vec![ip("::ffff:127.0.0.1")]),
        ("cgnat.example", vec![ip("100.64.1.1")]),
        ("all-loopback.example", vec![ip("127.0.0.1"), ip("::1")]),
        ("rebind.example", vec![PUBLIC_V4, ip("127.0.0.1")]),
        ("public.example", vec![PUBLIC_V4, PUBLIC_V6]),
        ("mixed.example", vec![ip("127.0.0.1"), ip("10.0.0.5")]),
        ("empty.example", vec![]),
    ]))
}

/// What a delivery to `url` may connect to, checked the way the client checks it: IP
/// literals on the URL, names while resolving them.
async fn admit(guard: &AddressGuard, url: &str) -> Result<Vec<IpAddr>, String> {
    let url = Url::parse(url).map_err(|e| format!("unparseable: {e}"))?;
    guard.check_url(&url).map_err(|e| e.to_string())?;
    match url.host() {
        Some(Host::Ipv4(ip)) => Ok(vec![IpAddr::V4(ip)]),
        Some(Host::Ipv6(ip)) => Ok(vec![IpAddr::V6(ip)]),
        Some(Host::Domain(name)) => guard
            .resolve(name, &fake_dns())
            .await
            .map_err(|e| e.to_string()),
        None => Err("no host".into()),
    }
}

fn default_guard() -> AddressGuard {
    AddressGuard::default()
}

fn allow_all() -> AddressGuard {
    AddressGuard::new(true, Vec::new())
}

fn allow(cidrs: &[&str]) -> AddressGuard {
    let nets = cidrs
        .iter()
        .map(|c| parse_cidr(c).expect("test CIDR"))
        .collect();
    AddressGuard::new(false, nets)
}

/// Hostile targets: the URL, the address it must be understood as, and the range's kind.
const HOSTILE: &[(&str, &str, &str)] = &[
    ("http://127.0.0.1/", "127.0.0.1", "loopback"),
    ("http://127.1/", "127.0.0.1", "loopback"),
    ("http://2130706433/", "127.0.0.1", "loopback"),
    ("http://0x7f.1/", "127.0.0.1", "loopback"),
    ("http://0177.0.0.1/", "127.0.0.1", "loopback"),
    ("http://0x7f000001/", "127.0.0.1", "loopback"),
    ("http://017700000001/", "127.0.0.1", "loopback"),
    (
        "http://127.255.255.254:8080/x",
        "127.255.255.254",
        "loopback",
    ),
    ("http://[::1]/", "::1", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", "loopback"),
    ("http://[::ffff:7f00:1]/", "::ffff:127.0.0.1", "loopback"),
    ("http://[::127.0.0.1]/", "::127.0.0.1", "loopback"),
    ("http://[::ffff:0:7f00:1]/", "::ffff:0:7f00:1", "loopback"),
    ("http://[2002:7f00:1::]/", "2002:7f00:1::", "loopback"),
    ("http://10.0.0.1/", "10.0.0.1", "private"),
    ("http://172.16.0.1/", "172.16.0.1", "private"),
    ("http://172.31.255.255/", "172.31.255.255", "private"),
    ("http://192.168.1.1/", "192.168.1.1", "private"),
    ("http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1", "private"),
    ("http://[64:ff9b::a00:1]/", "64:ff9b::a00:1", "private"),
    ("http://100.64.0.1/", "100.64.0.1", "carrier-grade NAT"),
    (
        "http://169.254.169.254/latest/meta-data/",
        "169.254.169.254",
        "link-local",
    ),
    ("http://2852039166/", "169.254.169.254", "link-local"),
    ("http://0xa9fea9fe/", "169.254.169.254", "link-local"),
    (
        "http://0251.0376.0251.0376/",
        "169.254.169.254",
        "link-local",
    ),
    (
        "https://[::ffff:a9fe:a9fe]/",
        "::ffff:169.254.169.254",
        "link-local",
    ),
    ("http://[fe80::1]/", "fe80::1", "link-local"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254", "unique-local"),
    ("http://[fc00::1]/", "fc00::1", "unique-local"),
    ("http://[fec0::1]/", "fec0::1", "site-local"),
    ("http://224.0.0.1/", "224.0.0.1", "multicast"),
    (
        "http://239.255.255.250:1900/",
        "239.255.255.250",
        "multicast",
    ),
    ("http://[ff02::1]/", "ff02::1", "multicast"),
    ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
    ("http://0/", "0.0.0.0", "unspecified"),
    ("http://[::]/", "::", "unspecified"),
    ("http://255.255.255.255/", "255.255.255.255", "broadcast"),
    ("http://192.0.0.1/", "192.0.0.1", "reserved"),
    ("http://240.0.0.1/", "240.0.0.1", "reserved"),
    ("http://192.0.2.1/", "192.0.2.1", "documentation"),
    ("http://198.51.100.7/", "198.51.100.7", "documentation"),
    ("http://203.0.113.9/", "203.0.113.9", "documentation"),
    ("http://[2001:db8::1]/", "2001:db8::1", "documentation"),
    ("http://198.18.0.1/", "198.18.0.1", "benchmarking"),
    ("http://198.19.255.255/", "198.19.255.255", "benchmarking"),
    ("http://[100::1]/", "100::1", "discard-only"),
    ("http://[2001::1]/", "2001::1", "a Teredo tunnel"),
    ("http://localhost/", "127.0.0.1", "loopback"),
    ("http://localhost./", "127.0.0.1", "loopback"),
    ("http://LOCALHOST:8080/", "127.0.0.1", "loopback"),
    ("http://api.localhost/", "127.0.0.1", "loopback"),
    ("http://evil.example/", "10.0.0.5", "private"),
    ("http://metadata.example/", "169.254.169.254", "link-local"),
    ("http://ec2-v6.example/", "fd00:ec2::254", "unique-local"),
    ("http://mapped.example/", "::ffff:127.0.0.1", "loopback"),
    ("http://cgnat.example/", "100.64.1.1", "carrier-grade NAT"),
    ("http://all-loopback.example/", "::1", "loopback"),
];

#[tokio::test]
async fn hostile_targets_are_refused_by_default_and_allowed_when_private_networks_are() {
    assert!(HOSTILE.len() >= 30);
    for &(url, address, kind) in HOSTILE {
        let refused = admit(&default_guard(), url)
            .await
            .expect_err(&format!("{url} must be refused"));
        let expected = format!("{} ", ip(address));
        assert!(
            refused.contains(&expected) && refused.contains(&format!(" is {kind}, in ")),
            "{url}: {refused}"
        );
        assert!(refused.ends_with(&format!("({HOW_TO_ALLOW})")), "{refused}");

        let allowed = admit(&allow_all(), url)
            .await
            .unwrap_or_else(|e| panic!("{url} with --allow-private-networks: {e}"));
        assert!(allowed.contains(&ip(address)), "{url}: {allowed:?}");
    }
}

#[tokio::test]
async fn odd_ipv4_spellings_are_normalised_before_the_check() {
    for url in [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://0x7F.0.0.1/",
    ] {
        let parsed = Url::parse(url).expect("url");
        assert_eq!(
            parsed.host(),
            Some(Host::Ipv4(Ipv4Addr::LOCALHOST)),
            "{url}"
        );
        assert_eq!(parsed.host_str(), Some("127.0.0.1"), "{url}");
    }
}

#[tokio::test]
async fn public_targets_are_allowed() {
    for (url, expected) in [
        ("http://93.184.216.34/", vec![PUBLIC_V4]),
        ("https://[2606:4700::1111]/hook", vec![PUBLIC_V6]),
        ("http://1572395042/", vec![PUBLIC_V4]),
        (
            "http://[::ffff:93.184.216.34]/",
            vec![ip("::ffff:93.184.216.34")],
        ),
        (
            "http://[64:ff9b::5db8:d822]/",
            vec![ip("64:ff9b::5db8:d822")],
        ),
        ("https://public.example/", vec![PUBLIC_V4, PUBLIC_V6]),
    ] {
        assert_eq!(admit(&default_guard(), url).await, Ok(expected), "{url}");
    }
}

/// Decision: a mixed answer is filtered, not refused. Only checked addresses reach the
/// connector, so 127.0.0.1 is never dialled; the public address still works.
#[tokio::test]
async fn a_mixed_answer_is_filtered_to_its_allowed_addresses() {
    assert_eq!(
        admit(&default_guard(), "http://rebind.example/").await,
        Ok(vec![PUBLIC_V4])
    );
    assert_eq!(
        admit(&allow(&["10.0.0.0/8"]), "http://mixed.example/").await,
        Ok(vec![ip("10.0.0.5")])
    );
    let refused = admit(&default_guard(), "http://mixed.example/")
        .await
        .expect_err("nothing allowed is left");
    assert_eq!(
        refused,
        "mixed.example resolves only to blocked addresses: 127.0.0.1 is loopback, in \
         127.0.0.0/8; 10.0.0.5 is private, in 10.0.0.0/8 (blocked; allow with \
         --allow-private-networks or --allow-cidr)"
    );
}

#[tokio::test]
async fn allow_cidr_lets_only_its_ranges_through() {
    let guard = allow(&["10.0.0.0/8"]);
    assert_eq!(
        admit(&guard, "http://evil.example/").await,
        Ok(vec![ip("10.0.0.5")])
    );
    assert!(admit(&guard, "http://10.0.0.5/").await.is_ok());
    assert!(admit(&guard, "http://[::ffff:10.0.0.5]/").await.is_ok());
    for url in [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://169.254.169.254/",
        "http://192.168.0.1/",
        "http://[fd00::1]/",
    ] {
        assert!(admit(&guard, url).await.is_err(), "{url} is outside 10/8");
    }
    // localhost answers both loopback addresses; a v4-only allowance keeps the v4 one.
    assert_eq!(
        admit(&allow(&["127.0.0.0/8"]), "http://localhost/").await,
        Ok(vec![ip("127.0.0.1")])
    );
    assert_eq!(
        admit(&allow(&["fd00:ec2::254"]), "http://[fd00:ec2::254]/").await,
        Ok(vec![ip("fd00:ec2::254")])
    );
}

#[tokio::test]
async fn resolution_failures_are_not_refusals() {
    let guard = default_guard();
    let unknown = guard.resolve("nowhere.example", &fake_dns()).await;
    assert!(
        matches!(unknown, Err(ResolveError::Lookup { .. })),
        "{unknown:?}"
    );
    let empty = guard.resolve("empty.example", &fake_dns()).await;
    assert!(
        matches!(empty, Err(ResolveError::NoAddresses { .. })),
        "{empty:?}"
    );
}

#[test]
fn blocked_range_table() {
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("127.0.0.1", Some(("loopback", "127.0.0.0/8"))),
        ("10.255.255.255", Some(("private", "10.0.0.0/8"))),
        ("172.16.0.0", Some(("private", "172.16.0.0/12"))),
        ("192.168.255.255", Some(("private", "192.168.0.0/16"))),
        (
            "100.127.255.255",
            Some(("carrier-grade NAT", "100.64.0.0/10")),
        ),
        ("169.254.169.254", Some(("link-local", "169.254.0.0/16"))),
        ("0.1.2.3", Some(("unspecified", "0.0.0.0/8"))),
        ("255.255.255.255", Some(("broadcast", "255.255.255.255/32"))),
        ("255.255.255.254", Some(("reserved", "240.0.0.0/4"))),
        ("239.1.1.1", Some(("multicast", "224.0.0.0/4"))),
        ("192.88.99.1", Some(("reserved", "192.88.99.0/24"))),
        ("::", Some(("unspecified", "::/128"))),
        ("::1", Some(("loopback", "::1/128"))),
        ("::2", Some(("unspecified", "0.0.0.0/8"))),
        ("::ffff:192.168.1.1", Some(("private", "192.168.0.0/16"))),
        ("64:ff9b::a9fe:a9fe", Some(("link-local", "169.254.0.0/16"))),
        ("64:ff9b:1::1", Some(("local-use NAT64", "64:ff9b:1::/48"))),
        ("2002:c0a8:101::1", Some(("private", "192.168.0.0/16"))),
        ("2001:2::1", Some(("benchmarking", "2001:2::/48"))),
        ("3fff::1", Some(("documentation", "3fff::/20"))),
        ("fdff:ffff::1", Some(("unique-local", "fc00::/7"))),
        ("febf::1", Some(("link-local", "fe80::/10"))),
        ("ffff::1", Some(("multicast", "ff00::/8"))),
        ("1::1", Some(("reserved", "::/8"))),
        ("fe00::1", Some(("reserved", "fe00::/9"))),
        ("4000::1", Some(("reserved", "4000::/2"))),
        // Just outside the blocked ranges.
        ("9.255.255.255", None),
        ("11.0.0.0", None),
        ("100.63.255.255", None),
        ("100.128.0.0", None),
        ("126.255.255.255", None),
        ("128.0.0.0", None),
        ("169.253.255.255", None),
        ("169.255.0.0", None),
        ("172.15.255.255", None),
        ("172.32.0.0", None),
        ("192.0.1.0", None),
        ("192.0.3.0", None),
        ("192.167.255.255", None),
        ("192.169.0.0", None),
        ("198.17.255.255", None),
        ("198.20.0.0", None),
        ("223.255.255.255", None),
        ("1.1.1.1", None),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
        ("2001:4860:4860::8888", None),
        ("2001:1::1", None),
        ("3fff:1000::1", None),
        ("::ffff:93.184.216.34", None),
        ("::93.184.216.34", None),
        ("64:ff9b::5db8:d822", None),
        ("2002:5db8:d822::1", None),
    ];
    for &(address, expected) in cases {
        let got = blocked_range(ip(address)).map(|r| (r.kind, r.cidr));
        assert_eq!(got, expected, "{address}");
    }
}

#[test]
fn everything_outside_global_unicast_is_blocked() {
    for top in 0..=u16::MAX {
        let address = Ipv6Addr::from(((top as u128) << 112) | (0x1234 << 96) | 1);
        let global = (0x2000..=0x3fff).contains(&top);
        assert_eq!(
            blocked_range(IpAddr::V6(address)).is_none(),
            global,
            "{address}"
        );
    }
}

#[test]
fn table_cidrs_match_their_bits() {
    for r in BLOCKED_V4 {
        let net: ipnet::Ipv4Net = r.range.cidr.parse().expect(r.range.cidr);
        assert_eq!(
            (u32::from(net.network()), net.prefix_len() as u32),
            (r.net, r.prefix)
        );
    }
    for r in BLOCKED_V6 {
        let net: ipnet::Ipv6Net = r.range.cidr.parse().expect(r.range.cidr);
        assert_eq!(
            (u128::from(net.network()), net.prefix_len() as u32),
            (r.net, r.prefix)
        );
    }
}

#[test]
fn messages_name_the_address_and_the_range() {
    let literal = |url: &str| {
        default_guard()
            .check_url(&Url::parse(url).expect("url"))
            .expect_err("blocked")
            .to_string()
    };
    assert_eq!(
        literal("http://169.254.169.254/latest/meta-data/"),
        "169.254.169.254 is link-local, in 169.254.0.0/16 (blocked; allow with \
         --allow-private-networks or --allow-cidr)"
    );
    assert_eq!(
        literal("http://[::ffff:169.254.169.254]/"),
        "::ffff:169.254.169.254 (IPv4-mapped 169.254.169.254) is link-local, in \
         169.254.0.0/16 (blocked; allow with --allow-private-networks or --allow-cidr)"
    );
}

#[test]
fn allow_cidr_values_parse_or_fail_naming_the_value() {
    assert_eq!(
        parse_cidr("10.0.0.0/8").map(|n| n.to_string()).ok(),
        Some("10.0.0.0/8".into())
    );
    assert_eq!(
        parse_cidr(" 10.1.2.3/8").map(|n| n.to_string()).ok(),
        Some("10.0.0.0/8".into())
    );
    assert_eq!(
        parse_cidr("fd00::/8").map(|n| n.to_string()).ok(),
        Some("fd00::/8".into())
    );
    assert_eq!(
        parse_cidr("127.0.0.1").map(|n| n.to_string()).ok(),
        Some("127.0.0.1/32".into())
    );
    for bad in ["10.0.0.0/33", "10.0.0/8", "", "localhost", "fd00::/129"] {
        let error = parse_cidr(bad).expect_err(bad).to_string();
        assert!(error.contains(&format!("{bad:?}")), "{error}");
    }
}

#[test]
fn flags_and_lists_parse() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        guard: AddressGuardArgs,
    }
    let parse = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map(|cli| cli.guard.guard())
            .map_err(|e| e.to_string())
    };
    assert_eq!(parse(&[]), Ok(default_guard()));
    assert_eq!(parse(&["--allow-private-networks"]), Ok(allow_all()));
    assert_eq!(
        parse(&[
            "--allow-cidr",
            "10.0.0.0/8",
            "--allow-cidr",
            "fd00::/8,127.0.0.1"
        ]),
        Ok(allow(&["10.0.0.0/8", "fd00::/8", "127.0.0.1/32"]))
    );
    assert_eq!(parse(&["--allow-cidr", ""]), Ok(default_guard()));
    let error = parse(&["--allow-cidr", "10.0.0.0/8,10.0.0.0/40"]).expect_err("bad");
    assert!(error.contains("\"10.0.0.0/40\" is not a CIDR"), "{error}");
}

#[test]
fn localhost_names() {
    for name in [
        "localhost",
        "localhost.",
        "LocalHost",
        "a.localhost",
        "x.y.localhost.",
    ] {
        assert!(is_localhost(name), "{name}");
    }
    for name in [
        "localhost.example",
        "notlocalhost",
        "xlocalhost",
        "ülocalhost",
        "",
    ] {
        assert!(!is_localhost(name), "{name}");
    }
}

/// A loopback HTTP server that counts connections and answers 204.
async fn counting_server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, connections)
}

fn client(guard: AddressGuard) -> GuardedClient {
    proxied_client(guard, None)
}

fn proxied_client(guard: AddressGuard, proxy: Option<&str>) -> GuardedClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let lookup = FakeLookup(HashMap::from([
        ("loopback.test", vec![ip("127.0.0.1")]),
        ("proxy.test", vec![ip("127.0.0.1")]),
        ("public.test", vec![PUBLIC_V4]),
        ("rebind.test", vec![PUBLIC_V4, ip("127.0.0.1")]),
    ]));
    let proxy = proxy.map(|p| EgressProxy::parse(p).expect("proxy URL"));
    GuardedClient::build(
        reqwest::Client::builder(),
        guard,
        Arc::new(lookup),
        proxy.as_ref(),
    )
    .expect("client")
}

/// Through reqwest, on loopback only: the resolver's refusal surfaces in the error chain,
/// nothing connects, and an allowance lets the same requests through.
#[tokio::test]
async fn the_client_refuses_before_connecting() {
    let (port, connections) = counting_server().await;
    let guarded = client(default_guard());

    let literal = guarded
        .post(&format!("http://127.0.0.1:{port}/"))
        .await
        .expect_err("IP literal refused before sending");
    assert!(
        matches!(&literal, ResolveError::Blocked(b) if b.host().is_none()),
        "{literal:?}"
    );

    for url in [
        format!("http://loopback.test:{port}/"),
        format!("http://localhost:{port}/"),
    ] {
        let error = guarded
            .post(&url)
            .await
            .expect("names are checked while resolving")
            .send()
            .await
            .expect_err("resolver refuses");
        let blocked =
            blocked_cause(&error).unwrap_or_else(|| panic!("{url}: no BlockedTarget in {error:?}"));
        assert!(
            blocked.to_string().contains("127.0.0.1 is loopback"),
            "{blocked}"
        );
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);

    let allowed = client(allow(&["127.0.0.0/8"]));
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://loopback.test:{port}/"),
        format!("http://localhost:{port}/"),
    ] {
        let response = allowed.post(&url).await.expect("allowed").send().await;
        assert_eq!(
            response.map(|r| r.status().as_u16()).ok(),
            Some(204),
            "{url}"
        );
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn other_errors_are_not_mistaken_for_refusals() {
    let guarded = client(default_guard());
    let error = guarded
        .post("http://nowhere.test/")
        .await
        .expect("a name")
        .send()
        .await
        .expect_err("unknown name");
    assert!(blocked_cause(&error).is_none(), "{error:?}");
    assert!(error.is_connect(), "{error:?}");
}

/// Through the egress proxy (here the counting server, on loopback, which the guard would
/// refuse as a target): the proxy's own address is allowed, targets are checked before
/// the proxy is asked, and a name with any blocked address is refused as a whole.
#[tokio::test]
async fn the_egress_proxy_is_allowed_and_targets_are_checked_before_it() {
    let (port, connections) = counting_server().await;
    for proxy in [
        format!("http://proxy.test:{port}"),
        format!("http://127.0.0.1:{port}"),
    ] {
        let guarded = proxied_client(default_guard(), Some(&proxy));
        for target in [
            "http://loopback.test/",
            "http://localhost/",
            "http://10.1.2.3/",
            "http://rebind.test/",
        ] {
            let refused = guarded
                .post(target)
                .await
                .expect_err("blocked target refused before the proxy");
            assert!(
                matches!(refused, ResolveError::Blocked(_)),
                "{target}: {refused:?}"
            );
        }
        let partial = guarded.post("http://rebind.test/").await.err();
        assert!(
            partial
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("refused as a whole through the egress proxy"),
        );
        let unknown = guarded.post("http://nowhere.test/").await.err();
        assert!(
            matches!(unknown, Some(ResolveError::Lookup { .. })),
            "{unknown:?}"
        );
        assert_eq!(connections.load(Ordering::SeqCst), 0, "{proxy}");

        let response = guarded
            .post("http://public.test/hook")
            .await
            .expect("a public target is handed to the proxy")
            .send()
            .await;
        assert_eq!(
            response.map(|r| r.status().as_u16()).ok(),
            Some(204),
            "{proxy}"
        );
        assert_eq!(connections.swap(0, Ordering::SeqCst), 1, "{proxy}");
    }
}
