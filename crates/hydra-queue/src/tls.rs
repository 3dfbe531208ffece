//! TLS settings (rustls with the `ring` provider) for servers and clients, loaded from PEM
//! files or PEM text, so that client settings stay serializable and work on another host.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// PEM data, from a file or inline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Pem {
    /// A path, read when the connection is set up (on the host that connects).
    File(PathBuf),
    /// PEM text itself.
    Text(String),
}

impl Pem {
    fn read(&self) -> Result<Vec<u8>> {
        match self {
            Pem::File(path) => std::fs::read(path)
                .map_err(|e| Error::Tls(format!("cannot read {}: {e}", path.display()))),
            Pem::Text(text) => Ok(text.as_bytes().to_vec()),
        }
    }

    fn what(&self) -> String {
        match self {
            Pem::File(path) => path.display().to_string(),
            Pem::Text(_) => "inline PEM".to_string(),
        }
    }

    fn certs(&self) -> Result<Vec<CertificateDer<'static>>> {
        let data = self.read()?;
        let certs = rustls_pemfile::certs(&mut data.as_slice())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Tls(format!("bad certificate PEM in {}: {e}", self.what())))?;
        if certs.is_empty() {
            return Err(Error::Tls(format!(
                "no certificate found in {}",
                self.what()
            )));
        }
        Ok(certs)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>> {
        let data = self.read()?;
        rustls_pemfile::private_key(&mut data.as_slice())
            .map_err(|e| Error::Tls(format!("bad private key PEM in {}: {e}", self.what())))?
            .ok_or_else(|| Error::Tls(format!("no private key found in {}", self.what())))
    }

    fn roots(&self) -> Result<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in self.certs()? {
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("bad CA certificate in {}: {e}", self.what())))?;
        }
        Ok(roots)
    }
}

/// The `ring` provider: it builds without cmake or a C toolchain beyond cc. rustls 0.23.48
/// deprecates it for lacking post-quantum key exchange; it remains supported and safe.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's TLS settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerTls {
    /// The server's certificate chain, leaf first.
    pub cert_chain: Pem,
    /// The server's private key.
    pub key: Pem,
    /// When set, clients must present a certificate signed by one of these CAs (mutual TLS).
    pub client_ca: Option<Pem>,
}

impl ServerTls {
    /// The rustls configuration these settings describe.
    pub fn config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(ca.roots()?),
                    provider(),
                )
                .build()
                .map_err(|e| Error::Tls(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(self.cert_chain.certs()?, self.key.key()?)
            .map_err(|e| Error::Tls(format!("server certificate and key: {e}")))?;
        Ok(Arc::new(config))
    }
}

/// A client's TLS settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientTls {
    /// CAs that may sign the server's certificate; `None` for the system's roots.
    pub ca: Option<Pem>,
    /// The client's certificate chain, for servers that require one.
    pub cert_chain: Option<Pem>,
    /// The client's private key, with `cert_chain`.
    pub key: Option<Pem>,
    /// The name the server's certificate must carry; default: the host of the address.
    pub server_name: Option<String>,
}

impl ClientTls {
    /// The rustls configuration these settings describe.
    pub fn config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let roots = match &self.ca {
            Some(ca) => ca.roots()?,
            None => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                roots
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let config =
            match (&self.cert_chain, &self.key) {
                (Some(chain), Some(key)) => builder
                    .with_client_auth_cert(chain.certs()?, key.key()?)
                    .map_err(|e| Error::Tls(format!("client certificate and key: {e}")))?,
                (None, None) => builder.with_no_client_auth(),
                _ => {
                    return Err(Error::Tls(
                        "a client certificate needs both cert_chain and key".to_string(),
                    ))
                }
            };
        Ok(Arc::new(config))
    }

    /// The server name to verify for a connection to `addr` (`host:port`).
    pub fn server_name(&self, addr: &str) -> Result<ServerName<'static>> {
        let host = match &self.server_name {
            Some(name) => name.clone(),
            None => host_of(addr).to_string(),
        };
        ServerName::try_from(host.clone())
            .map_err(|_| Error::Tls(format!("invalid server name {host:?}")))
    }
}

/// Explains a failed TLS handshake, with a hint where the cause is likely a server that
/// does not speak TLS (it answered with something else, or closed the connection).
pub(crate) fn connect_error(addr: &str, e: std::io::Error) -> Error {
    let not_tls = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some_and(|t| matches!(t, rustls::Error::InvalidMessage(_)));
    let hint = if not_tls {
        " (the server did not answer with TLS: is it a plain TCP server?)"
    } else if matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
    ) {
        " (the server closed the connection: is it a plain TCP server, or at its connection \
         limit?)"
    } else {
        ""
    };
    Error::Tls(format!("handshake with {addr} failed: {e}{hint}"))
}

/// Explains an I/O error met on a TLS stream during the protocol handshake, when the
/// server is still able to refuse the session: under TLS 1.3 a server checks the client's
/// certificate after the client has finished its side, so the refusal arrives as an alert
/// on the first read. `None` when the error did not come from TLS.
pub(crate) fn refusal(addr: &str, e: &std::io::Error) -> Option<Error> {
    use rustls::AlertDescription as A;
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    let hint = match tls {
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            " (the server requires a client certificate)"
        }
        rustls::Error::AlertReceived(
            A::UnknownCA
            | A::BadCertificate
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => " (the server refused this client's certificate)",
        _ => "",
    };
    Some(Error::Tls(format!(
        "server {addr} ended the TLS session: {tls}{hint}"
    )))
}

/// The host part of `host:port` (brackets removed from IPv6 literals).
fn host_of(addr: &str) -> &str {
    let host = match addr.rfind(':') {
        Some(i) if !addr[i + 1..].contains(']') => &addr[..i],
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_message<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Tls(m)) => m,
            other => panic!("expected Error::Tls, got {other:?}"),
        }
    }

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn unreadable_or_empty_pem_is_a_tls_error_naming_its_source() {
        let missing = ClientTls {
            ca: Some(Pem::File("/nonexistent/ca.pem".into())),
            ..ClientTls::default()
        };
        let m = tls_message(missing.config());
        assert!(m.contains("cannot read /nonexistent/ca.pem"), "{m}");
        let garbage = ClientTls {
            ca: Some(Pem::Text("not a certificate".into())),
            ..ClientTls::default()
        };
        let m = tls_message(garbage.config());
        assert!(m.contains("no certificate found in inline PEM"), "{m}");
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_a_server_its_matching_key() {
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let half = ClientTls {
            cert_chain: Some(Pem::Text(cert.clone())),
            ..ClientTls::default()
        };
        let m = tls_message(half.config());
        assert!(m.contains("needs both cert_chain and key"), "{m}");
        let mismatched = ServerTls {
            cert_chain: Pem::Text(cert),
            key: Pem::Text(other_key),
            client_ca: None,
        };
        let m = tls_message(mismatched.config());
        assert!(m.contains("server certificate and key"), "{m}");
    }

    #[test]
    fn server_name_defaults_to_the_host_and_refuses_nonsense() {
        let tls = ClientTls::default();
        assert_eq!(
            tls.server_name("example.org:7878").unwrap(),
            ServerName::try_from("example.org").unwrap()
        );
        let bad = ClientTls {
            server_name: Some("not a name!".into()),
            ..ClientTls::default()
        };
        let m = tls_message(bad.server_name("x:1"));
        assert!(m.contains("invalid server name"), "{m}");
    }

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("example.org:7878"), "example.org");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7878"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
