//! Active health checks by the gRPC health checking protocol (`grpc.health.v1.Health/Check`), for
//! gRPC services, whose answer to a plain `GET` says nothing about them. The messages are the
//! protocol's own (`tonic-health`'s, encoded by `prost`); each goes in gRPC's length-prefixed
//! frame: a compression flag byte, then the message's length as four big-endian bytes.

use crate::grpc::GrpcStatus;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_TYPE, TE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use prost::Message;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The method every gRPC health service answers.
pub(crate) const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// An answer is a few bytes; more than this is not a health service's.
const MAX_ANSWER: usize = 64 * 1024;
const FRAME_HEADER: usize = 5;

/// The framed request for `service` (`""`: the server as a whole), made once at config load.
pub(crate) fn request_body(service: &str) -> Bytes {
    let message = HealthCheckRequest {
        service: service.to_owned(),
    };
    let mut frame = BytesMut::with_capacity(FRAME_HEADER + message.encoded_len());
    frame.put_u8(0);
    frame.put_u32(message.encoded_len() as u32);
    message
        .encode(&mut frame)
        .expect("the frame was sized for the message");
    frame.freeze()
}

/// The headers gRPC requires of a call.
pub(crate) fn prepare<B>(request: &mut Request<B>) {
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
}

/// Whether the answer says the service is serving: HTTP 200, `grpc-status` 0 (in the trailers,
/// or the headers of a trailers-only answer) and a `HealthCheckResponse` of `SERVING`.
pub(crate) async fn is_serving(response: Response<Incoming>) -> bool {
    if response.status() != StatusCode::OK {
        return false;
    }
    if GrpcStatus::in_headers(response.headers()).is_some() {
        // A trailers-only answer has no message: an error (such as a service the server does
        // not know), whatever its code.
        return false;
    }
    let Ok(answer) = Limited::new(response.into_body(), MAX_ANSWER).collect().await else {
        return false;
    };
    let succeeded = answer
        .trailers()
        .and_then(GrpcStatus::in_headers)
        .is_some_and(|status| status.code() == 0);
    succeeded && serving(answer.to_bytes())
}

/// Whether a framed `HealthCheckResponse` says `SERVING`.
fn serving(mut frame: Bytes) -> bool {
    if frame.len() < FRAME_HEADER || frame.get_u8() != 0 {
        // Too short, or compressed: the request asked for neither.
        return false;
    }
    let length = frame.get_u32() as usize;
    if frame.len() != length {
        return false;
    }
    HealthCheckResponse::decode(frame).is_ok_and(|answer| answer.status == ServingStatus::Serving as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(status: ServingStatus) -> Bytes {
        let message = HealthCheckResponse {
            status: status as i32,
        };
        let mut frame = BytesMut::new();
        frame.put_u8(0);
        frame.put_u32(message.encoded_len() as u32);
        message.encode(&mut frame).expect("encoded");
        frame.freeze()
    }

    #[test]
    fn only_a_whole_serving_answer_is_serving() {
        assert!(serving(framed(ServingStatus::Serving)));
        assert!(!serving(framed(ServingStatus::NotServing)));
        assert!(!serving(framed(ServingStatus::Unknown)));
        let whole = framed(ServingStatus::Serving);
        assert!(!serving(whole.slice(..whole.len() - 1)), "cut short");
        assert!(!serving(Bytes::from_static(&[1, 0, 0, 0, 0])), "compressed");
        assert!(!serving(Bytes::new()));
    }

    #[test]
    fn the_request_is_one_uncompressed_frame() {
        let body = request_body("books.v1.Books");
        assert_eq!(body[0], 0);
        assert_eq!(
            u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize,
            body.len() - 5
        );
        let message = HealthCheckRequest::decode(body.slice(5..)).expect("decodes");
        assert_eq!(message.service, "books.v1.Books");
        assert_eq!(&request_body("")[..], [0, 0, 0, 0, 0], "the server as a whole");
    }
}
