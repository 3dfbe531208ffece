//! Token authentication by challenge and response: HMAC-SHA256 over both sides' fresh
//! nonces, so the token never crosses the wire and a captured handshake cannot be replayed.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::protocol::NONCE_LEN;

type HmacSha256 = Hmac<Sha256>;

const CLIENT_LABEL: &[u8] = b"hydra-v1 client proof";
const SERVER_LABEL: &[u8] = b"hydra-v1 server proof";

/// A fresh random nonce.
pub fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

fn mac(token: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(token).expect("hmac takes keys of any length");
    for p in parts {
        mac.update(&(p.len() as u32).to_be_bytes());
        mac.update(p);
    }
    mac
}

/// The client's proof: HMAC(token, label | server nonce | client nonce | client name).
pub fn client_proof(
    token: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    name: &str,
) -> [u8; NONCE_LEN] {
    mac(
        token,
        &[CLIENT_LABEL, server_nonce, client_nonce, name.as_bytes()],
    )
    .finalize()
    .into_bytes()
    .into()
}

/// The server's proof: HMAC(token, label | client nonce | server nonce).
pub fn server_proof(
    token: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
) -> [u8; NONCE_LEN] {
    mac(token, &[SERVER_LABEL, client_nonce, server_nonce])
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a client proof in constant time.
pub fn verify_client(
    token: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    name: &str,
    proof: &[u8; NONCE_LEN],
) -> bool {
    mac(
        token,
        &[CLIENT_LABEL, server_nonce, client_nonce, name.as_bytes()],
    )
    .verify_slice(proof)
    .is_ok()
}

/// Checks a server proof in constant time.
pub fn verify_server(
    token: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    proof: &[u8; NONCE_LEN],
) -> bool {
    mac(token, &[SERVER_LABEL, client_nonce, server_nonce])
        .verify_slice(proof)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_token_nonces_and_name() {
        let (s, c) = (nonce(), nonce());
        let p = client_proof(b"secret", &s, &c, "w1");
        assert!(verify_client(b"secret", &s, &c, "w1", &p));
        assert!(!verify_client(b"other", &s, &c, "w1", &p));
        assert!(
            !verify_client(b"secret", &nonce(), &c, "w1", &p),
            "replay with a new server nonce"
        );
        assert!(!verify_client(b"secret", &s, &c, "w2", &p));
        let sp = server_proof(b"secret", &s, &c);
        assert!(verify_server(b"secret", &s, &c, &sp));
        assert_ne!(sp, p, "client and server proofs differ");
        assert!(!verify_server(b"other", &s, &c, &sp));
    }
}
