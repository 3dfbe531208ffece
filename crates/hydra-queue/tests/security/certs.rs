//! Certificates made at run time with rcgen: a CA, server and client certificates it signs,
//! and the bad ones (another CA's, expired), so that nothing that expires is checked in.

use hydra_queue::{ClientTls, Pem, ServerTls};
use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// The name the server's certificate carries (besides 127.0.0.1).
pub const SERVER_NAME: &str = "hydra.test";

/// A certificate authority that signs leaf certificates.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM text.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        Ca { cert, key }
    }

    /// The CA certificate, as a trust anchor.
    pub fn pem(&self) -> Pem {
        Pem::Text(self.pem_text())
    }

    /// The CA certificate as PEM text.
    pub fn pem_text(&self) -> String {
        self.cert.pem()
    }

    fn sign(&self, sans: &[&str], usage: ExtendedKeyUsagePurpose, expired: bool) -> Leaf {
        let key = KeyPair::generate().expect("generate leaf key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "hydra test leaf");
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if expired {
            params.not_before = date_time_ymd(2001, 1, 1);
            params.not_after = date_time_ymd(2002, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for [`SERVER_NAME`] and 127.0.0.1.
    pub fn server(&self) -> Leaf {
        self.sign(
            &[SERVER_NAME, "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
        )
    }

    /// A valid client certificate.
    pub fn client(&self) -> Leaf {
        self.sign(&["worker"], ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    /// A client certificate that expired in 2002.
    pub fn expired_client(&self) -> Leaf {
        self.sign(&["worker"], ExtendedKeyUsagePurpose::ClientAuth, true)
    }
}

/// A CA, the server's TLS settings (optionally requiring client certificates from the CA)
/// and what clients need.
pub struct Pki {
    pub ca: Ca,
    pub server: Leaf,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = Ca::new("hydra test CA");
        let server = ca.server();
        Pki { ca, server }
    }

    /// Server TLS; `mutual` requires client certificates signed by this CA.
    pub fn server_tls(&self, mutual: bool) -> ServerTls {
        ServerTls {
            cert_chain: Pem::Text(self.server.cert.clone()),
            key: Pem::Text(self.server.key.clone()),
            client_ca: mutual.then(|| self.ca.pem()),
        }
    }

    /// Client TLS trusting this CA, verifying [`SERVER_NAME`], with no certificate.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca: Some(self.ca.pem()),
            cert_chain: None,
            key: None,
            server_name: Some(SERVER_NAME.to_string()),
        }
    }

    /// Client TLS presenting `leaf`.
    pub fn client_tls_with(&self, leaf: &Leaf) -> ClientTls {
        ClientTls {
            cert_chain: Some(Pem::Text(leaf.cert.clone())),
            key: Some(Pem::Text(leaf.key.clone())),
            ..self.client_tls()
        }
    }
}
