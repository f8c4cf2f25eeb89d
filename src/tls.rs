//! TLS configuration for both legs (docs/protocol.md T1–T7): rustls with the
//! `ring` provider chosen explicitly, TLS 1.2 and 1.3 only.
//!
//! Owns: loading certificates and keys (PEM), the client-leg acceptor
//! configuration (swappable on SIGHUP without touching handshakes in
//! flight), and the upstream-leg connector configuration per policy. Never
//! reads or writes a socket; the session driver does the handshakes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::{TlsPolicy, UpstreamTls};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "{path}: cannot read certificates: {reason} (expected a PEM file with one or more CERTIFICATE blocks)"
    )]
    Certs { path: PathBuf, reason: String },
    #[error(
        "{path}: cannot read the private key: {reason} (expected a PEM file with a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"
    )]
    Key { path: PathBuf, reason: String },
    #[error("{path}: no certificate found (expected PEM CERTIFICATE blocks)")]
    NoCerts { path: PathBuf },
    #[error("certificate {cert} and key {key} do not form a usable pair: {reason}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("{path}: no usable CA certificate in it")]
    NoCa { path: PathBuf },
    #[error("no system CA certificates found; set the upstream's `tls.ca`")]
    NoSystemRoots,
    #[error("upstream server name '{0}' is not a valid DNS name or IP address")]
    ServerName(String),
}

/// The crypto provider: ring, chosen explicitly (a second provider in the
/// dependency tree would make rustls refuse to pick one at run time).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Certs {
            path: path.into(),
            reason: e.to_string(),
        })?
        .collect();
    let certs = certs.map_err(|e| TlsError::Certs {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts { path: path.into() });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Builds the client-leg server configuration from a certificate chain and
/// key (TLS 1.2 and 1.3 only).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key_der = load_key(key)?;
    let pair = |e: rustls::Error| TlsError::Pair {
        cert: cert.into(),
        key: key.into(),
        reason: e.to_string(),
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(pair)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(pair)?;
    Ok(Arc::new(config))
}

/// A listener's certificate, swappable on reload: handshakes in flight keep
/// the configuration they started with; new ones take the current one.
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<ServerConfig>,
}

impl ServerTls {
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let config = server_config(cert, key)?;
        Ok(ServerTls {
            cert: cert.into(),
            key: key.into(),
            current: ArcSwap::new(config),
        })
    }

    /// The configuration for a new handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Reads the files again; on error the previous certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.cert, &self.key)?;
        self.current.store(config);
        Ok(())
    }
}

/// What replyfix does about TLS towards one upstream (T4).
#[derive(Clone)]
pub struct UpstreamTlsContext {
    pub policy: TlsPolicy,
    pub implicit: bool,
    /// `None` under policy `none`.
    pub config: Option<Arc<ClientConfig>>,
    /// Name to send (SNI) and, under `verify`, to verify.
    pub server_name: Option<String>,
}

impl UpstreamTlsContext {
    /// Builds the connector configuration: `encrypt` accepts any
    /// certificate (it protects against passive listeners only), `may` as
    /// well, `verify` checks the chain against `ca` or the system roots and
    /// the name.
    pub fn new(tls: &UpstreamTls) -> Result<UpstreamTlsContext, TlsError> {
        let config = match tls.policy {
            TlsPolicy::None => None,
            TlsPolicy::May | TlsPolicy::Encrypt => {
                let p = provider();
                let algorithms = p.signature_verification_algorithms;
                let config = ClientConfig::builder_with_provider(p)
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .map_err(|e| TlsError::ServerName(e.to_string()))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(algorithms)))
                    .with_no_client_auth();
                Some(Arc::new(config))
            }
            TlsPolicy::Verify => {
                let mut roots = RootCertStore::empty();
                match &tls.ca {
                    Some(path) => {
                        for cert in load_certs(path)? {
                            let _ = roots.add(cert);
                        }
                        if roots.is_empty() {
                            return Err(TlsError::NoCa { path: path.clone() });
                        }
                    }
                    None => {
                        let found = rustls_native_certs::load_native_certs();
                        for cert in found.certs {
                            let _ = roots.add(cert);
                        }
                        if roots.is_empty() {
                            return Err(TlsError::NoSystemRoots);
                        }
                    }
                }
                let config = ClientConfig::builder_with_provider(provider())
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .map_err(|e| TlsError::ServerName(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(Arc::new(config))
            }
        };
        if let Some(name) = &tls.server_name {
            ServerName::try_from(name.as_str()).map_err(|_| TlsError::ServerName(name.clone()))?;
        }
        Ok(UpstreamTlsContext {
            policy: tls.policy,
            implicit: tls.implicit,
            config,
            server_name: tls.server_name.clone(),
        })
    }

    /// The name used for SNI and verification: the configured one, else
    /// the host part of the server address.
    pub fn name_for(&self, server: &str) -> Option<ServerName<'static>> {
        let host = match &self.server_name {
            Some(n) => n.clone(),
            None => host_of(server).to_string(),
        };
        ServerName::try_from(host).ok()
    }
}

/// The host part of `host:port` / `[v6]:port`.
pub fn host_of(server: &str) -> &str {
    if let Some(rest) = server.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match server.rsplit_once(':') {
        Some((h, _)) => h,
        None => server,
    }
}

/// Under `encrypt` and `may` the upstream's certificate is not checked
/// (T4: like Postfix's `encrypt`, it defeats passive listening only); the
/// handshake signature still is.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A short description of a TLS session for the session log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// rustls's name for the version, e.g. `TLSv1_3`.
    pub version: &'static str,
    /// rustls's name for the cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: &'static str,
    /// Upstream leg only: the certificate was verified (T7).
    pub verified: bool,
}

impl TlsInfo {
    pub fn from_common(c: &rustls::CommonState, verified: bool) -> TlsInfo {
        TlsInfo {
            version: c
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("unknown"),
            cipher: c
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("unknown"),
            verified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_handles_ipv6_and_names() {
        assert_eq!(host_of("mx.example.com:25"), "mx.example.com");
        assert_eq!(host_of("[::1]:2525"), "::1");
        assert_eq!(host_of("127.0.0.1:25"), "127.0.0.1");
    }

    #[test]
    fn missing_certificate_file_is_a_clear_error() {
        let e = ServerTls::load(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    }
}
