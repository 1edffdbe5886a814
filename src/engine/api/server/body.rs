//! Streams and request bodies the resource files share: a channel as a response stream, a
//! request body spooled to disk. Kept apart so that no resource file imports another for them.

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{ApiError, ApiResult};
use crate::engine::container::logs::{LogChunk, LogStream};
use crate::engine::SharedEngine;

/// An `mpsc::Receiver` as a `Stream` (ends when every sender is gone).
pub fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Write a request body to a new file under the spool directory.
pub(super) async fn spool(engine: &SharedEngine, body: Body) -> ApiResult<std::path::PathBuf> {
    use tokio::io::AsyncWriteExt;
    let dir = super::spool_dir(&engine.roots);
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        ApiError::new(500, format!("{what} {}: {e}", dir.display()))
    };
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| failed("create", &e))?;
    let suffix: [u8; 8] = rand::random();
    let path = dir.join(format!("import-{}.tar", hex::encode(suffix)));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| failed("create a file in", &e))?;
    let mut chunks = body.into_data_stream();
    let written: ApiResult<()> = async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("reading the image tar failed: {e}")))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| failed("write to", &e))?;
        }
        file.flush().await.map_err(|e| failed("write to", &e))
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e);
    }
    Ok(path)
}

/// One frame of Docker's multiplexed stream: `[stream, 0, 0, 0, len u32 BE]` then the payload.
pub fn multiplexed_frame(chunk: &LogChunk) -> Bytes {
    let stream = match chunk.stream {
        LogStream::Stdout => 1u8,
        LogStream::Stderr => 2u8,
    };
    let mut frame = Vec::with_capacity(8 + chunk.bytes.len());
    frame.extend_from_slice(&[stream, 0, 0, 0]);
    frame.extend_from_slice(&(chunk.bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(&chunk.bytes);
    Bytes::from(frame)
}

/// How long the rest of a request body is read after an error answer, at most.
const DRAIN_AFTER_ERROR: std::time::Duration = std::time::Duration::from_secs(10);

/// Middleware for endpoints that stream large request bodies (a `cp` tar, an image load, a
/// build context): after an error answer, the rest of the body is read (for at most
/// [`DRAIN_AFTER_ERROR`]) before the connection closes, as Go's HTTP server does for dockerd.
/// Closing a socket with unread data makes the kernel reset the connection, and a client
/// still writing its body would report "broken pipe" instead of the error it was sent.
pub(super) async fn drain_body_after_error(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let shared = std::sync::Arc::new(tokio::sync::Mutex::new(body.into_data_stream()));
    let for_handler = futures_util::stream::unfold(shared.clone(), |stream| async move {
        let chunk = stream.lock().await.next().await;
        chunk.map(|c| (c, stream))
    });
    let request = axum::extract::Request::from_parts(parts, Body::from_stream(for_handler));
    let response = next.run(request).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        let _ = tokio::time::timeout(DRAIN_AFTER_ERROR, async {
            let mut rest = shared.lock().await;
            while let Some(Ok(_)) = rest.next().await {}
        })
        .await;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_stream_and_big_endian_length() {
        let chunk = LogChunk {
            stream: LogStream::Stderr,
            bytes: b"oops\n".to_vec(),
        };
        assert_eq!(
            &multiplexed_frame(&chunk)[..],
            b"\x02\0\0\0\0\0\0\x05oops\n"
        );
    }
}
