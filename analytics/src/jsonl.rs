//! A sink that writes one JSON object per line: the access log.

use crate::{EventSink, RequestEvent};
use std::io::{self, BufWriter, Write};

/// Writes each event as one JSON line and flushes after every batch, so a reader of the file
/// (or of stdout) is never more than one batch behind.
pub struct JsonLinesSink<W: Write> {
    out: BufWriter<W>,
}

/// Room for a hundred-odd events, so a busy batch costs few write calls.
const BUFFER: usize = 64 * 1024;

impl<W: Write> JsonLinesSink<W> {
    pub fn new(out: W) -> Self {
        JsonLinesSink {
            out: BufWriter::with_capacity(BUFFER, out),
        }
    }
}

impl<W: Write + Send + 'static> EventSink for JsonLinesSink<W> {
    fn write_batch(&mut self, events: &[RequestEvent]) -> io::Result<()> {
        for event in events {
            serde_json::to_writer(&mut self.out, event)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()
    }
}
