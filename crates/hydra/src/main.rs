//! `hydra`: a distributed test runner on top of Hydra's queues. `main` only calls
//! [`cli::main`]; see `hydra --help`.

mod cli;
mod coordinator;
mod error;
mod events;
mod exec;
mod messages;
mod report;
mod security;
mod state;
mod tasks;
mod template;
mod timings;
mod worker;

fn main() {
    std::process::exit(cli::main());
}
