//! TLS for tests: a test CA made with rcgen and the leaf certificates it signs, written as PEM
//! files a gateway config can name; a rustls client that reports what the handshake settled on;
//! and curl (Debian's, built with OpenSSL and nghttp2) as the independent client. `.ci/run`
//! installs curl and sets `LOOKOUT_REQUIRE_CURL`, so there a missing curl fails the test.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType, IsCa,
    KeyIdMethod, KeyPair, RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;
use tokio::net::TcpStream;

/// A certificate authority for one test, and the folder its files go to.
pub struct TestPki {
    pub dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// PEM files of a leaf certificate (the chain is the leaf alone; the CA is the test's).
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Leaf {
    /// The certificate's DER, as a client sees it in the handshake.
    pub fn der(&self) -> Vec<u8> {
        CertificateDer::from_pem_file(&self.cert)
            .expect("certificate")
            .to_vec()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    pub fn new() -> TestPki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Lookout test CA");
        let key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let pki = TestPki {
            dir: tempfile::tempdir().expect("temp dir"),
            ca,
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).expect("write CA");
        pki
    }

    /// The CA certificate's PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf for `names` (DNS names or IP addresses), valid until 4096.
    pub fn issue(&self, stem: &str, names: &[&str]) -> Leaf {
        self.issue_with(stem, names, |_| {})
    }

    /// A leaf whose parameters `adjust` changes first (e.g. its expiry).
    pub fn issue_with(
        &self,
        stem: &str,
        names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let (cert, key) = self.leaf(names, adjust);
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).expect("write certificate");
        std::fs::write(&leaf.key, key.serialize_pem()).expect("write key");
        leaf
    }

    fn leaf(
        &self,
        names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> (rcgen::Certificate, KeyPair) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        adjust(&mut params);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("sign leaf");
        (cert, key)
    }

    /// A PEM certificate revocation list of this CA that revokes the certificates with these
    /// serial numbers (see [`TestPki::issue_with`] and `CertificateParams::serial_number`).
    pub fn crl(&self, stem: &str, serials: &[u64]) -> PathBuf {
        let revoked = serials.iter().map(|&serial| RevokedCertParams {
            serial_number: SerialNumber::from(serial),
            revocation_time: rcgen::date_time_ymd(2024, 1, 1),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        });
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(4096, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked.collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca).expect("sign the CRL");
        let file = self.dir.path().join(format!("{stem}.crl.pem"));
        std::fs::write(&file, crl.pem().expect("PEM")).expect("write the CRL");
        file
    }

    /// A server config for an HTTPS test upstream named `names`; with `client_auth`, it demands
    /// a client certificate this CA signed.
    pub fn server_config(&self, names: &[&str], client_auth: bool) -> Arc<ServerConfig> {
        let (cert, key) = self.leaf(names, |_| {});
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if client_auth {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()), provider())
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key");
        let config = builder
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server certificate");
        Arc::new(config)
    }

    /// A client that trusts this CA, offers `alpn`, and speaks only `versions`.
    pub fn client_config(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// [`TestPki::client_config`] that shows `leaf` when the server asks for a certificate.
    pub fn client_config_with_cert(&self, leaf: &Leaf) -> Arc<ClientConfig> {
        let chain = vec![CertificateDer::from_pem_file(&leaf.cert).expect("certificate")];
        let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("key");
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(self.roots())
            .with_client_auth_cert(chain, key)
            .expect("client certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.ca.pem().as_bytes()).expect("CA");
        roots.add(ca).expect("CA root");
        roots
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a request over TLS got, and what its handshake settled on.
pub struct TlsReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `1.2` or `1.3`.
    pub version: &'static str,
    pub alpn: Option<String>,
    /// The DER of the certificate the server presented.
    pub certificate: Vec<u8>,
}

/// One GET of `path` over TLS to `addr`, asking for `server_name` (SNI), over HTTP/2 when ALPN
/// chose it. `Err` carries the handshake's error.
pub async fn tls_get(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<TlsReply, std::io::Error> {
    tls_get_with(addr, server_name, config, path, &[]).await
}

/// [`tls_get`] with request `headers`.
pub async fn tls_get_with(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<TlsReply, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let (_, session) = stream.get_ref();
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
        _ => "1.3",
    };
    let alpn = session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let certificate = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let mut request = Request::get(format!("https://{server_name}{path}")).header("host", server_name);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).expect("request");
    let io = TokioIo::new(stream);
    // Under TLS 1.3 a server that refuses the client's certificate says so after the client's
    // side of the handshake is done: the refusal arrives as the request's error.
    let refused = std::io::Error::other;
    let response = if alpn.as_deref() == Some("h2") {
        let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(refused)?;
        tokio::spawn(connection);
        let mut request = request;
        request.headers_mut().remove("host");
        sender.send_request(request).await.map_err(refused)?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(refused)?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(refused)?
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Ok(TlsReply {
        status,
        headers,
        body,
        version,
        alpn,
        certificate,
    })
}

/// What curl printed and how it exited.
pub struct CurlRun {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs curl with `args`, or returns `None` (the test then skips) when curl is not installed
/// and CI's `LOOKOUT_REQUIRE_CURL` is not set.
pub async fn curl(args: &[&str]) -> Option<CurlRun> {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .await;
    match output {
        Ok(output) => Some(CurlRun {
            exit_code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Err(error) if std::env::var_os("LOOKOUT_REQUIRE_CURL").is_none() => {
            eprintln!("skipped: no curl ({error}); install curl to run this test");
            None
        }
        Err(error) => panic!("curl is required here: {error}"),
    }
}
