//! vantage's own HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready` and the status page.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::metrics::{Format, Metrics};
use crate::status_page;
use crate::store::Store;

/// A client gets this long to send its request headers; slow or idle clients cannot pile up.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct State {
    pub metrics: Metrics,
    pub store: Arc<Store>,
    pub location: String,
    /// Set once the config is loaded and probing has started.
    pub ready: AtomicBool,
}

/// Binds the listen address. `:PORT` means every interface, IPv4 and IPv6, as in Prometheus.
pub async fn bind(address: &str) -> io::Result<TcpListener> {
    if let Some(port) = address.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid port in {address:?}"),
            )
        })?;
        // A host without IPv6 cannot open the dual-stack socket; IPv4 alone is then all there is.
        return match bind_socket(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true) {
            Ok(listener) => Ok(listener),
            Err(_) => bind_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false),
        };
    }
    let addr = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{address:?} has no address"),
            )
        })?;
    bind_socket(addr, false)
}

fn bind_socket(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Serves until `shutdown` completes.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(&req, &state)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

fn handle(req: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/-/healthy" | "/-/ready" | "/") {
        return text(StatusCode::NOT_FOUND, "not found; try /metrics\n");
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            respond(
                StatusCode::OK,
                format.content_type(),
                state.metrics.render(format),
            )
        }
        "/-/healthy" => text(StatusCode::OK, "vantage is healthy.\n"),
        "/-/ready" if state.ready.load(Ordering::Acquire) => {
            text(StatusCode::OK, "vantage is ready.\n")
        }
        "/-/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "vantage is not ready.\n"),
        _ => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status_page::render(&state.store, &state.location),
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
