//! Lookout's end-to-end tests, in one binary (every test binary links the whole gateway, so
//! there is one, but for `streaming.rs`, which measures the process's memory and so runs alone
//! in its own). Each module starts real upstreams and a real gateway on loopback.

mod e2e;
