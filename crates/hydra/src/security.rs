//! TLS and token options, turned into the library's settings.

use std::path::PathBuf;

use clap::Args;
use hydra_queue::{ClientTls, Pem, ServerTls};

use crate::error::{Error, Result};

/// TLS of a coordinator (`run --listen`, `serve`).
#[derive(Debug, Clone, Args)]
pub struct ServerTlsArgs {
    /// Serve TLS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM): mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// The library's server TLS settings, if TLS was asked for.
    pub fn settings(&self) -> Option<ServerTls> {
        let (cert, key) = (self.tls_cert.as_ref()?, self.tls_key.as_ref()?);
        Some(ServerTls {
            cert_chain: Pem::File(cert.clone()),
            key: Pem::File(key.clone()),
            client_ca: self.tls_client_ca.clone().map(Pem::File),
        })
    }
}

/// TLS of a worker (`work`).
#[derive(Debug, Clone, Args)]
pub struct ClientTlsArgs {
    /// Connect with TLS, trusting these CAs (PEM) to sign the coordinator's certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for a coordinator that requires one; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name the coordinator's certificate must carry (default: the host of --connect).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

impl ClientTlsArgs {
    /// The library's client TLS settings: TLS is on when any TLS option is given (with the
    /// system's roots when --tls-ca is not).
    pub fn settings(&self) -> Option<ClientTls> {
        if self.tls_ca.is_none() && self.tls_cert.is_none() && self.tls_server_name.is_none() {
            return None;
        }
        Some(ClientTls {
            ca: self.tls_ca.clone().map(Pem::File),
            cert_chain: self.tls_cert.clone().map(Pem::File),
            key: self.tls_key.clone().map(Pem::File),
            server_name: self.tls_server_name.clone(),
        })
    }
}

/// The shared token.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Read the shared token from FILE (default: the HYDRA_TOKEN environment variable).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token from --token-file, else from `HYDRA_TOKEN`, else none.
    pub fn load(&self) -> Result<Option<String>> {
        match &self.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    what: "token file",
                    path: path.clone(),
                    source,
                })?;
                let token = text.trim_end_matches(['\n', '\r']).to_string();
                if token.is_empty() {
                    return Err(Error::BadFile {
                        what: "token file",
                        path: path.clone(),
                        message: "it is empty".into(),
                    });
                }
                Ok(Some(token))
            }
            None => Ok(std::env::var("HYDRA_TOKEN").ok().filter(|t| !t.is_empty())),
        }
    }
}
