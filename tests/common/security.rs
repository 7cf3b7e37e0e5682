//! Helpers of the security tests: a private PKI, HTTPS receivers, receivers on other loopback
//! addresses, and a forward proxy that records what it forwards.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use super::Receiver;

/// A certificate authority made up for one test.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "webhook-operator test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        Self { ca }
    }

    /// The CA certificate, PEM: what a receiver hands its senders.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A TLS server configuration with a certificate for `names` (DNS names or addresses).
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        super::init();
        let key = KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .expect("server params")
            .signed_by(&key, &self.ca)
            .expect("server certificate");
        let chain = vec![cert.der().clone(), self.ca.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Arc::new(config)
    }
}

/// Accepts TCP connections and completes TLS handshakes in the background; a failed handshake
/// (the client refused the certificate) is counted and never reaches the HTTP server.
struct TlsListener {
    address: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The acceptor task is gone: nothing will ever connect again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.address)
    }
}

/// Failed TLS handshakes of an HTTPS receiver.
#[derive(Clone, Default)]
pub struct HandshakeFailures(Arc<Mutex<usize>>);

impl HandshakeFailures {
    pub fn count(&self) -> usize {
        *self.0.lock().unwrap()
    }
}

impl Receiver {
    /// A plain HTTP receiver on another loopback address, e.g. 127.0.0.2.
    pub async fn start_on(ip: &str) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        Self::serve(listener, port)
    }

    /// An HTTPS receiver on `ip` presenting a certificate from `config`.
    pub async fn start_tls(
        ip: &str,
        config: Arc<rustls::ServerConfig>,
    ) -> (Self, HandshakeFailures) {
        let tcp = TcpListener::bind((ip, 0)).await.expect("bind receiver");
        let address = tcp.local_addr().expect("addr");
        let failures = HandshakeFailures::default();
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let counted = failures.clone();
        tokio::spawn(async move {
            while let Ok((socket, peer)) = tcp.accept().await {
                let (acceptor, tx, counted) = (acceptor.clone(), tx.clone(), counted.clone());
                tokio::spawn(async move {
                    match acceptor.accept(socket).await {
                        Ok(stream) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Err(_) => *counted.0.lock().unwrap() += 1,
                    }
                });
            }
        });
        let listener = TlsListener { address, ready: rx };
        (Self::serve(listener, address.port()), failures)
    }
}

/// A forward proxy: `CONNECT` tunnels, and absolute-form HTTP requests forwarded one per
/// connection. Records the request line of each (`CONNECT host:port HTTP/1.1`,
/// `POST http://host:port/path HTTP/1.1`) and the `Proxy-Authorization` it was sent.
#[derive(Clone)]
pub struct ForwardProxy {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl ForwardProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let proxy = Self {
            port,
            requests: Arc::default(),
            authorizations: Arc::default(),
        };
        let this = proxy.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let this = this.clone();
                tokio::spawn(async move {
                    let _ = this.serve(socket).await;
                });
            }
        });
        proxy
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn authorizations(&self) -> Vec<String> {
        self.authorizations.lock().unwrap().clone()
    }

    async fn serve(&self, mut client: TcpStream) -> std::io::Result<()> {
        let (head, rest) = read_head(&mut client).await?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
        self.requests.lock().unwrap().push(request_line.clone());
        if let Some(value) = header_value(&headers, "proxy-authorization") {
            self.authorizations.lock().unwrap().push(value.to_owned());
        }
        let mut parts = request_line.split(' ');
        let (method, target) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        if method == "CONNECT" {
            let mut upstream = TcpStream::connect(target).await?;
            client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await?;
            upstream.write_all(&rest).await?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
            return Ok(());
        }
        let url = url::Url::parse(target).map_err(std::io::Error::other)?;
        let authority = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(80)
        );
        let length: usize = header_value(&headers, "content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = rest;
        while body.len() < length {
            let mut chunk = [0; 8192];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        // One request per connection, in both directions: nothing is pooled by mistake.
        let mut forwarded = format!("{request_line}\r\n");
        for line in headers.iter().filter(|l| {
            let name = l.split(':').next().unwrap_or_default().trim();
            !name.eq_ignore_ascii_case("connection")
                && !name.eq_ignore_ascii_case("proxy-authorization")
        }) {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
        forwarded.push_str("connection: close\r\n\r\n");
        let mut upstream = TcpStream::connect(&authority).await?;
        upstream.write_all(forwarded.as_bytes()).await?;
        upstream.write_all(&body).await?;
        let mut response = Vec::new();
        upstream.read_to_end(&mut response).await?;
        let split = find(&response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
        let (response_head, response_body) = response.split_at(split);
        let response_head = String::from_utf8_lossy(response_head);
        let mut head_lines: Vec<&str> = response_head
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
            .collect();
        head_lines.push("connection: close");
        client
            .write_all(format!("{}\r\n\r\n", head_lines.join("\r\n")).as_bytes())
            .await?;
        client.write_all(response_body).await?;
        client.shutdown().await
    }
}

fn header_value<'a>(headers: &[&'a str], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads up to the end of the request head; returns the head and the bytes read past it.
async fn read_head(socket: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            buffer.truncate(end);
            return Ok((String::from_utf8_lossy(&buffer).into_owned(), rest));
        }
        let mut chunk = [0; 4096];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}
