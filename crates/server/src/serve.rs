//! The HTTP/1.1 accept loop (instead of `axum::serve`, which has no read timeouts): a header read
//! timeout that also closes idle keep-alive connections, an idle timeout on request bodies, a
//! cap on open connections (beyond it a short `503` and close), graceful shutdown, and the client
//! address as `ConnectInfo<SocketAddr>` for handlers. Also the early `413` on a declared
//! `Content-Length` above `--max-artifact-bytes` (docs/security.md, "Abuse resistance").

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

/// Connection limits and timeouts (from `Config`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to receive a request's complete headers; also how long an idle keep-alive connection
    /// stays open waiting for the next request.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body; a stalled upload fails (its temporary
    /// file is removed) and its connection closes.
    pub body_read_timeout: Duration,
    /// Open connections at most; a connection beyond it gets `503` and is closed.
    pub max_connections: usize,
}

impl Limits {
    /// The limits `config` asks for, each at least 1 (ms, or connections).
    pub fn from_config(config: &crate::Config) -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms.max(1)),
            body_read_timeout: Duration::from_millis(config.body_read_timeout_ms.max(1)),
            max_connections: config.max_connections.max(1),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for open requests to finish.
/// With `tls`, every connection is a TLS one (handshake within the header read timeout).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!("accepting a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let body_timeout = limits.body_read_timeout;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
            request.extensions_mut().insert(ConnectInfo(remote));
            app.clone().oneshot(request)
        });
        match &tls {
            None => {
                let connection =
                    graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!("connection from {remote}: {err}");
                    }
                    drop(permit);
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let handshake_timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => {
                            tracing::info!("TLS handshake with {remote} failed: {err}");
                            return;
                        }
                        Err(_) => {
                            tracing::info!("TLS handshake with {remote} timed out");
                            return;
                        }
                    };
                    let identity = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(crate::tls::identity_of);
                    let connection =
                        watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
                    if let Err(err) = crate::tls::CLIENT_IDENTITY
                        .scope(identity, connection)
                        .await
                    {
                        tracing::debug!("connection from {remote}: {err}");
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection over the limit with `503` and closes it.
async fn refuse(mut stream: TcpStream, max_connections: usize) {
    tracing::warn!("refusing a connection: {max_connections} connections open (--max-connections)");
    let body = r#"{"error":"unavailable","message":"too many open connections, retry later"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Read what the client sent until it closes, so closing does not reset the connection
        // before it read the answer.
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// `413` when a request declares (`Content-Length`) more than `max_bytes`, before its body is
/// read.
pub fn check_declared_length(headers: &HeaderMap, max_bytes: u64) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > max_bytes => Err(ApiError::PayloadTooLarge(format!(
            "the upload declares {length} bytes; the largest accepted artifact is {max_bytes} bytes (--max-artifact-bytes)"
        ))),
        _ => Ok(()),
    }
}

/// Removes a temporary file when dropped, unless disarmed (`.0 = None`): an upload whose request
/// is dropped mid-way (the client went away) leaves no file behind.
pub struct RemoveOnDrop(pub Option<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
