//! TLS and tokens end to end: certificates made at run time with rcgen, a coordinator that
//! requires client certificates and a token, workers with and without them.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::distributed::serve;
use crate::support::*;

/// PEM files of a CA, a server certificate for 127.0.0.1 and a client certificate.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn write_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "hydra e2e CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = params.self_signed(&ca_key).unwrap();
    let leaf = |sans: &[&str], usage| {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf(&["worker"], ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn mutual_tls_and_token_admit_a_proper_worker_and_refuse_others() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    let token = dir.path().join("token");
    let tasks = tasks_file(dir.path(), &["a", "b", "c"]);
    let (serve, addr) = serve(
        dir.path(),
        &tasks,
        &[
            "--tls-cert",
            s(&pki.server_cert),
            "--tls-key",
            s(&pki.server_key),
            "--tls-client-ca",
            s(&pki.ca),
            "--token-file",
            s(&token),
            "--worker-timeout",
            "30",
        ],
    );
    // No client certificate: refused.
    let mut c = hydra();
    c.args(["work", "--connect", &addr, "--tls-ca", s(&pki.ca)])
        .args(["--token-file", s(&token), "--", "true"]);
    let out = run(c, "hydra work without a client certificate");
    assert_eq!(out.code(), 2, "{}", out.stderr);
    // Plain TCP to a TLS coordinator: refused.
    let mut c = hydra();
    c.args([
        "work",
        "--connect",
        &addr,
        "--token-file",
        s(&token),
        "--",
        "true",
    ]);
    assert_eq!(run(c, "hydra work without TLS").code(), 2);
    // Everything right: it works.
    let mut c = hydra();
    c.args(["work", "--connect", &addr, "--tls-ca", s(&pki.ca)])
        .args([
            "--tls-cert",
            s(&pki.client_cert),
            "--tls-key",
            s(&pki.client_key),
        ])
        .args(["--token-file", s(&token), "--", "true"]);
    let out = run(c, "hydra work with TLS");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let done = serve.finish();
    assert_eq!(done.code(), 0, "{}", done.stderr);
    check_report(&json(&dir.path().join("report.json")), &["a", "b", "c"]);
}

#[test]
fn run_listen_with_mutual_tls_still_runs_its_local_slots() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    let tasks = tasks_file(dir.path(), &["a", "b"]);
    let json_path = dir.path().join("r.json");
    let mut c = hydra();
    c.args(["run", "--jobs", "1", "--listen", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            s(&pki.server_cert),
            "--tls-key",
            s(&pki.server_key),
        ])
        .args([
            "--tls-client-ca",
            s(&pki.ca),
            "--tasks",
            s(&tasks),
            "--json",
        ])
        .arg(&json_path)
        .args(["--", "true"]);
    let out = run(c, "hydra run --listen with TLS");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    check_report(&json(&json_path), &["a", "b"]);
}

#[test]
fn bad_tls_files_are_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = tasks_file(dir.path(), &["a"]);
    let missing = dir.path().join("missing.pem");
    let mut c = hydra();
    c.args(["serve", "--listen", "127.0.0.1:0", "--tasks", s(&tasks)])
        .args(["--tls-cert", s(&missing), "--tls-key", s(&missing)]);
    let out = run(c, "hydra serve with a missing certificate");
    assert_eq!(out.code(), 2);
    assert!(out.stderr.contains("missing.pem"), "{}", out.stderr);
}
