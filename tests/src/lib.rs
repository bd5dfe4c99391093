//! Fixtures for Lookout's end-to-end tests: real upstream servers and real gateways on
//! `127.0.0.1:0`, and a plain HTTP client. Nothing here is a mock; the tests drive the same
//! code paths as production traffic.
//!
//! It must not use fixed ports or global servers: every test starts what it needs.

mod client;
mod dns;
mod gateway;
pub mod jwt;
pub mod keys;
mod otlp;
mod redis;
pub mod tls;
mod upstream;

pub use client::{
    answers, body_json, dashboard_instance_row, metrics_text, send, send_body, send_from, send_streamed,
    sql_rows, Reply,
};
pub use dns::TestDns;
pub use gateway::{
    single_upstream, start_gateway, start_gateway_to, start_gateway_with, wait_for_stored, wait_until,
};
pub use otlp::{attribute, span_attribute, OtlpReceiver};
pub use redis::TestRedis;
pub use upstream::{raw_server, read_request_head, refusing_address, TestUpstream};
