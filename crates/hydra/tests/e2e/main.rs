//! End-to-end tests: the real `hydra` binary, real processes, real loopback sockets.

mod cli_errors;
mod distributed;
mod reports;
mod support;
mod tls;
