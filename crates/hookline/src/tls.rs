//! TLS for the listeners (rustls). One certificate serves the gRPC port and
//! the HTTP port (health, readiness, metrics); with TLS on, neither accepts
//! plain connections.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, rustls, server::TlsStream};
use tokio_util::sync::CancellationToken;

/// A certificate or key file that cannot serve; `setting` names where its
/// path was set, and the message the setting, the file and the rule.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{setting}: cannot read {}: {source}", path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{setting}: {}: not PEM certificates: {source}", path.display())]
    NotCertificates {
        setting: &'static str,
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{setting}: {}: holds no CERTIFICATE block", path.display())]
    NoCertificate { setting: &'static str, path: PathBuf },
    #[error("HOOKLINE_TLS_KEY: {}: no PEM private key: {source}", path.display())]
    NoKey {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("HOOKLINE_TLS_KEY: {}: does not fit HOOKLINE_TLS_CERT: {source}", path.display())]
    KeyMismatch {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// A certificate chain and its key, checked to belong together at start-up.
#[derive(Clone)]
pub struct Identity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    http: Arc<rustls::ServerConfig>,
    /// `HOOKLINE_TLS_CLIENT_CA`: gRPC clients must present a certificate
    /// signed by one of these (mutual TLS).
    client_ca_pem: Option<Vec<u8>>,
}

impl Identity {
    /// # Errors
    /// Naming `HOOKLINE_TLS_CERT` or `HOOKLINE_TLS_KEY` and the rule.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsFileError> {
        let cert_pem = read(cert, "HOOKLINE_TLS_CERT")?;
        let key_pem = read(key, "HOOKLINE_TLS_KEY")?;
        let chain = certificates(&cert_pem, cert, "HOOKLINE_TLS_CERT")?;
        let private = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|source| TlsFileError::NoKey { path: key.to_owned(), source })?;
        let mut http = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|source| TlsFileError::KeyMismatch { path: key.to_owned(), source })?;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { cert_pem, key_pem, http: Arc::new(http), client_ca_pem: None })
    }

    /// Require gRPC clients to present a certificate signed by a CA in `pem`.
    pub fn require_clients(self, pem: Vec<u8>) -> Self {
        Self { client_ca_pem: Some(pem), ..self }
    }

    pub fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        let config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem));
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
            None => config,
        }
    }

    /// The certificate and key as PEM, which this service also presents when
    /// it calls another (to services that require client certificates).
    pub fn pem(&self) -> (Vec<u8>, Vec<u8>) {
        (self.cert_pem.clone(), self.key_pem.clone())
    }
}

fn read(path: &Path, setting: &'static str) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read { setting, path: path.to_owned(), source })
}

/// CA certificates for `HOOKLINE_TLS_CA`, checked to be PEM.
pub fn read_ca(path: &Path, setting: &'static str) -> Result<Vec<u8>, TlsFileError> {
    let pem = read(path, setting)?;
    certificates(&pem, path, setting)?;
    Ok(pem)
}

/// The certificates in `pem` (read from `path`, set by `setting`): at least one.
fn certificates(pem: &[u8], path: &Path, setting: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsFileError::NotCertificates { setting, path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate { setting, path: path.to_owned() });
    }
    Ok(certs)
}

/// An axum listener that hands out connections once their TLS handshake is
/// done. Handshakes run in their own tasks with a deadline, so a client that
/// stalls mid-handshake holds up nobody else.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(tcp: TcpListener, identity: &Identity, shutdown: CancellationToken) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(identity.http.clone());
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(error = %e, "HTTP accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(Self::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop stopped at shutdown; axum stops calling us then.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
