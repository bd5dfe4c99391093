//! The compressing body: the response's data read through `async-compression`'s encoder as it
//! streams, never whole, at the route's levels (see [`super::Levels`]). zstd and brotli with a
//! 512 KiB window, as nginx's brotli module: their default windows (2 and 4 MiB) would be held
//! by every response being compressed at once.
//!
//! An error of the body it reads (the upstream broke off, or stalled) comes out as that same
//! error, so that the request's record still tells one from the other.

use super::{Coding, CompressSlot};
use async_compression::brotli::EncoderParams;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use async_compression::Level;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use metrics::Counter;
use std::io;
use std::pin::Pin;
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body as the compressor sends it.
pub(crate) type Compressed = UnsyncBoxBody<Bytes, BoxError>;

/// `body`, compressed with `coding` at its policy's level, holding `slot` until it ends; what
/// goes in and out counts in the policy's counters. Trailers are dropped: only bodies without
/// them (no gRPC) are compressed.
pub(crate) fn compress<B>(body: B, coding: Coding, slot: CompressSlot) -> Compressed
where
    B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
{
    let (counters, levels) = (&slot.0.counters, slot.0.levels);
    let bytes_in = counters.bytes_in.clone();
    let read = BodyDataStream::new(body)
        .inspect_ok(move |data| bytes_in.increment(data.len() as u64))
        .map_err(io::Error::other);
    let reader = StreamReader::new(read);
    let encoder: Pin<Box<dyn AsyncRead + Send>> = match coding {
        Coding::Gzip => Box::pin(GzipEncoder::with_quality(reader, level(levels.gzip))),
        Coding::Brotli => Box::pin(BrotliEncoder::with_params(reader, brotli_params(levels.br))),
        Coding::Zstd => Box::pin(ZstdEncoder::with_quality_and_params(
            reader,
            level(levels.zstd),
            &[CParameter::window_log(WINDOW_BITS as u32)],
        )),
    };
    let out = Output {
        bytes: counters.bytes_out.clone(),
        _slot: slot,
    };
    let frames = ReaderStream::new(encoder).map(move |chunk| match chunk {
        Ok(data) => {
            out.sent(&data);
            Ok(Frame::data(data))
        }
        Err(error) => Err(unwrapped(error)),
    });
    StreamBody::new(frames).boxed_unsync()
}

/// What the compressed stream keeps to its end: the count of bytes sent, and its slot among the
/// responses compressed at once. Used through a method, so that the stream's closure owns it
/// whole: a closure that named only `bytes` would capture only that field, and the slot would
/// be given back at once.
struct Output {
    bytes: Counter,
    _slot: CompressSlot,
}

impl Output {
    fn sent(&self, data: &Bytes) {
        self.bytes.increment(data.len() as u64);
    }
}

fn brotli_params(quality: u32) -> EncoderParams {
    EncoderParams::default()
        .quality(level(quality))
        .window_size(WINDOW_BITS)
}

/// A level the config checked is within the coding's range.
fn level(value: u32) -> Level {
    Level::Precise(value as i32)
}

/// The base-2 logarithm of zstd's and brotli's window: 512 KiB.
const WINDOW_BITS: i32 = 19;

/// The body's own error, out of the `io::Error` that carried it through the encoder.
fn unwrapped(error: io::Error) -> BoxError {
    if error.get_ref().is_some() {
        if let Some(inner) = error.into_inner() {
            return inner;
        }
        unreachable!("an error with an inner error gives it up");
    }
    Box::new(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::{CompressPolicy, Levels};
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    use http_body_util::{Full, StreamBody};
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncReadExt;

    async fn decoded(coding: Coding, compressed: Bytes) -> Vec<u8> {
        let mut plain = Vec::new();
        let input = &compressed[..];
        match coding {
            Coding::Gzip => GzipDecoder::new(input).read_to_end(&mut plain).await,
            Coding::Brotli => BrotliDecoder::new(input).read_to_end(&mut plain).await,
            Coding::Zstd => ZstdDecoder::new(input).read_to_end(&mut plain).await,
        }
        .expect("decodes");
        plain
    }

    #[tokio::test]
    async fn a_body_comes_out_smaller_and_decodes_to_itself() {
        let policy = CompressPolicy::for_tests();
        let text = "the quick brown fox jumps over the lazy dog. ".repeat(2_000);
        for coding in Coding::ALL {
            let body = Full::new(Bytes::from(text.clone())).map_err(|never| match never {});
            let slot = CompressSlot::take(&policy).expect("a slot");
            let compressed = compress(body.boxed_unsync(), coding, slot);
            assert_eq!(policy.in_flight.load(Ordering::Relaxed), 1, "held by the body");
            let bytes = compressed.collect().await.expect("compresses").to_bytes();
            assert!(bytes.len() * 20 < text.len(), "{coding:?}: {}", bytes.len());
            assert_eq!(decoded(coding, bytes).await, text.as_bytes(), "{coding:?}");
        }
        assert_eq!(
            policy.in_flight.load(Ordering::Relaxed),
            0,
            "each gave its slot back"
        );
    }

    #[tokio::test]
    async fn the_policys_levels_reach_the_encoders() {
        let text: String = (0..2_000)
            .map(|i| {
                format!(
                    "{{\"id\":{i},\"title\":\"Book {}\",\"year\":{}}},",
                    i * 7_919 % 1_000,
                    1_900 + i % 120
                )
            })
            .collect();
        let sent = |levels: Levels, coding: Coding| {
            let text = text.clone();
            async move {
                let policy = CompressPolicy::for_tests_at(levels);
                let body = Full::new(Bytes::from(text.clone())).map_err(|never| match never {});
                let slot = CompressSlot::take(&policy).expect("a slot");
                let compressed = compress(body.boxed_unsync(), coding, slot);
                let bytes = compressed.collect().await.expect("compresses").to_bytes();
                assert_eq!(
                    decoded(coding, bytes.clone()).await,
                    text.as_bytes(),
                    "{coding:?}"
                );
                bytes.len()
            }
        };
        let low = Levels {
            gzip: 1,
            br: 0,
            zstd: 1,
        };
        let high = Levels {
            gzip: 9,
            br: 9,
            zstd: 12,
        };
        for coding in [Coding::Gzip, Coding::Brotli] {
            let (fast, small) = (sent(low, coding).await, sent(high, coding).await);
            assert!(
                small < fast,
                "{coding:?}: {small} bytes at the higher level, {fast} at the lower"
            );
        }
        // zstd's sizes do not fall with every level on a body this small and regular (level 1
        // sends the fewest here): that its level is the policy's is what this checks.
        assert_ne!(sent(low, Coding::Zstd).await, sent(high, Coding::Zstd).await);
    }

    /// An error of the body read, as the upstream's broken or stalled body gives one.
    #[derive(Debug, thiserror::Error)]
    #[error("broken off")]
    struct BrokenOff;

    #[tokio::test]
    async fn the_bodys_own_error_comes_through() {
        let policy = CompressPolicy::for_tests();
        let failing = futures_util::stream::iter([
            Ok(Frame::data(Bytes::from_static(b"partial"))),
            Err::<Frame<Bytes>, BoxError>(Box::new(BrokenOff)),
        ]);
        let slot = CompressSlot::take(&policy).expect("a slot");
        let compressed = compress(StreamBody::new(failing), Coding::Gzip, slot);
        let error = compressed.collect().await.expect_err("the body failed");
        assert!(error.is::<BrokenOff>(), "{error:?}");
    }
}
