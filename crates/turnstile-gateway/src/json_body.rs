//! [`JsonLine`]: every JSON body the gateway writes, ending with a newline.
//!
//! axum's `Json` writes the bare value, so `curl` leaves the shell prompt glued to the body;
//! a trailing newline is what command-line HTTP tools (and `jq --seq`, log shippers reading
//! one body per line) expect, and JSON parsers ignore it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Serialised bodies start with room for a typical decision or error, to grow at most once.
const INITIAL_CAPACITY: usize = 128;

/// `T` as an `application/json` body followed by `\n`.
pub(crate) struct JsonLine<T>(pub(crate) T);

impl<T: Serialize> IntoResponse for JsonLine<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(INITIAL_CAPACITY);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => {
                body.push(b'\n');
                (
                    [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
                    body,
                )
                    .into_response()
            }
            // Our own types always serialise; a failure is a bug, answered as one.
            Err(error) => {
                tracing::error!(%error, "cannot serialise a response body");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// The content type of every JSON body.
const JSON: &str = "application/json";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_json_body_ends_with_a_newline_and_says_it_is_json() {
        let response = JsonLine(serde_json::json!({ "status": "ok" })).into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"status\":\"ok\"}\n");
    }
}
