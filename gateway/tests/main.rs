//! Tests of the `lookout` binary itself: its commands, signals and output, run as a user would.
//! One test binary for the crate, as every test binary links the whole gateway.

mod analyze;
mod cli;
mod dashboard;
mod deploy;
mod store;
