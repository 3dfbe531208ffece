//! Chaos tests: faults injected on purpose (SIGKILL, SIGSTOP past the lease timeout, a
//! network black hole, a server shutting down under its clients) and proof that nothing
//! is lost, completed twice, or left hanging. See `docs/RELIABILITY.md` for the claims
//! each test checks; `scripts/soak` runs the long version of the source chaos.
//!
//! Consumer and feed processes are this very test binary, re-executed to run
//! [`chaos_child`] with a role in the environment; without one, that test does nothing.

mod chaos {
    pub mod children;
    pub mod ledger;
    pub mod network;
    pub mod proxy;
    pub mod shutdown;
    pub mod sink;
    pub mod source;
}

use chaos::children::ROLE_VAR;

/// The entry point of child processes (see [`chaos::children::Fleet::spawn`]).
#[test]
fn chaos_child() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    // Die with the test that started us, even if it is killed before its guard runs (a
    // child left stopped by SIGSTOP would otherwise stay forever).
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    match role.as_str() {
        "consumer" => chaos::source::consumer_main(),
        "feed" => chaos::sink::feed_main(),
        other => panic!("unknown chaos child role {other:?}"),
    }
}
