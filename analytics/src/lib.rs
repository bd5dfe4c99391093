//! Lookout's analytics crate owns the request-event schema ([`RequestEvent`]) and the pipeline
//! that carries events from the proxy to their sinks: a bounded queue the proxy offers events to
//! without ever waiting ([`EventQueue`]), and a writer on its own OS thread that drains the queue in
//! batches into an [`EventSink`] (today a JSON-lines access log).
//!
//! It must not block its callers: [`EventQueue::offer`] never waits, and an event that does not
//! fit is dropped and counted. It knows nothing of the gateway's internals; the gateway depends on
//! it, never the reverse.

mod event;
mod jsonl;
mod queue;
mod writer;

pub use event::{ErrorKind, RequestEvent};
pub use jsonl::JsonLinesSink;
pub use queue::{EventQueue, EventReceiver, QueueStats};
pub use writer::{spawn_writer, EventSink, WriterHandle};
