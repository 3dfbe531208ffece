//! Security tests over real loopback sockets: TLS and mutual TLS with certificates made at
//! run time, token authentication, and limits and hostile input, each with a well-behaved
//! worker running at the same time that must finish every item exactly once.

#[path = "security/certs.rs"]
mod certs;
#[path = "security/decoder.rs"]
mod decoder;
#[path = "security/hostile.rs"]
mod hostile;
#[path = "security/limits.rs"]
mod limits;
#[path = "security/raw.rs"]
mod raw;
#[path = "security/tls.rs"]
mod tls;
#[path = "security/token.rs"]
mod token;
#[path = "security/workload.rs"]
mod workload;
