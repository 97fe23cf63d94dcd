//! TCP is served with mutual TLS only: a client without a certificate of the
//! right CA cannot call, and plain TCP is refused off loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use shim_core::proto::v1::StateRequest;
use shim_core::{FakeShim, Shim};
use shim_transport_grpc::{ClientOptions, ClientTls, GrpcShim, ServeError, ServerOptions, ServerTls};

const T: Duration = Duration::from_secs(20);

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    fn pem(&self) -> Vec<u8> {
        self.issuer.pem().into_bytes()
    }

    /// A leaf certificate for `name`, and its key, both PEM.
    fn leaf(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &self.issuer).unwrap();
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }
}

async fn serve(server_ca: &Ca, client_ca: &Ca) -> (shim_transport_grpc::GrpcServer, std::net::SocketAddr) {
    let (cert_pem, key_pem) = server_ca.leaf("localhost");
    let tls = ServerTls { cert_pem, key_pem, client_ca_pem: client_ca.pem() };
    let shim: Arc<dyn Shim> = Arc::new(FakeShim::new());
    shim_transport_grpc::serve_tcp(shim, "127.0.0.1:0".parse().unwrap(), tls, ServerOptions::default()).await.unwrap()
}

async fn state_with(uri: &str, tls: Option<ClientTls>) -> Result<(), String> {
    let options = ClientOptions { connect_timeout: Duration::from_secs(5), ..Default::default() };
    let client = match tls {
        Some(tls) => GrpcShim::connect_tcp(uri, tls, options).await,
        None => GrpcShim::connect_tcp_insecure(uri, options).await,
    }
    .map_err(|e| e.to_string())?;
    match tokio::time::timeout(T, client.state(StateRequest {})).await {
        Ok(r) => r.map(|_| ()).map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_with_a_certificate_of_the_client_ca_are_served() {
    let (server_ca, client_ca, stranger_ca) = (Ca::new("server ca"), Ca::new("client ca"), Ca::new("stranger"));
    let (server, addr) = serve(&server_ca, &client_ca).await;
    let uri = format!("https://localhost:{}", addr.port());
    let client = |ca: &Ca| {
        let (cert_pem, key_pem) = ca.leaf("client");
        ClientTls { ca_pem: server_ca.pem(), cert_pem, key_pem, domain: None }
    };
    assert_eq!(state_with(&uri, Some(client(&client_ca))).await, Ok(()));
    // A certificate of another CA, and no TLS at all, are both turned away.
    assert!(state_with(&uri, Some(client(&stranger_ca))).await.is_err());
    assert!(state_with(&format!("http://127.0.0.1:{}", addr.port()), None).await.is_err());
    // A client that does not trust the server's CA does not talk to it.
    let (cert_pem, key_pem) = client_ca.leaf("client");
    let distrustful = ClientTls { ca_pem: stranger_ca.pem(), cert_pem, key_pem, domain: None };
    assert!(state_with(&uri, Some(distrustful)).await.is_err());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_is_refused_off_loopback() {
    let shim: Arc<dyn Shim> = Arc::new(FakeShim::new());
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let refused = shim_transport_grpc::serve_tcp_insecure_loopback(
            Arc::clone(&shim),
            addr.parse().unwrap(),
            ServerOptions::default(),
        )
        .await;
        assert!(matches!(refused, Err(ServeError::NotLoopback(_))), "{addr}");
    }
    let (server, addr) = shim_transport_grpc::serve_tcp_insecure_loopback(
        shim,
        "127.0.0.1:0".parse().unwrap(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(state_with(&format!("http://{addr}"), None).await, Ok(()));
    server.shutdown().await.unwrap();
}
