//! Micro-benchmarks of the frame codec and the source-queue state.
#![allow(missing_docs)]

fn main() {}
