//! vantage's own HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload` and the
//! status page.

mod body;
mod connections;
pub mod probe;
mod rate_limit;
mod render;
mod tls;
pub mod web_config;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use self::body::{Body, Payload, respond, text};
use self::connections::{Admitted, Connections, PushedOut};
use self::probe::ProbeEndpoint;
use self::web_config::{Verdict, WebConfig};
use crate::metrics::{Format, Metrics};
use crate::reload::{Reloaded, Request, Trigger};
use crate::status_page;
use crate::store::Store;

/// A client gets this long to send each request's headers, the first or the next on a kept-alive
/// connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many connections are served at once, so that clients cannot take the file
/// descriptors that probes need; past it a new connection pushes out the oldest idle one (see
/// [`connections`]).
const MAX_CONNECTIONS: usize = 256;

/// At most this many answers larger than a piece are unsent at once (hyper has not taken
/// their last piece); past it a new one pushes out the connection of the oldest (see
/// [`connections`]). This bounds the memory that clients which ask for `/metrics` and never
/// read can hold to this many renderings.
const MAX_UNSENT: usize = 8;

/// Requests an HTTP/2 connection may have open at once: as many as there may be unsent
/// answers, since more would only push out the connection's own.
const MAX_STREAMS: u32 = MAX_UNSENT as u32;

/// The most a request's head may take (hyper's read buffer): vantage's requests are a line and
/// a few headers, and a client must not make a connection hold more.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A connection is closed after this long, even mid-response: a client that stops reading its
/// response would otherwise hold it forever. Prometheus simply reconnects.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

pub struct State {
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    /// Set once the config is loaded and probing has started.
    pub ready: AtomicBool,
    /// Where `POST /-/reload` asks for a reload.
    pub reloads: mpsc::Sender<Request>,
    /// `--web.enable-lifecycle`: whether `POST /-/reload` is served.
    pub lifecycle: bool,
    /// `--web.config.file`: users and headers for every endpoint.
    pub web: Option<WebConfig>,
    /// `/probe`, with `--web.enable-probe`.
    pub probe: Option<Arc<ProbeEndpoint>>,
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
        return match bind_socket(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true) {
            // Only a host without IPv6 falls back to IPv4 alone; any other error (the port is
            // taken, say) is reported, not papered over with a half listener.
            Err(e) if ipv6_missing(&e) => {
                bind_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false)
            }
            other => other,
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

/// Whether creating or binding an IPv6 socket failed because this host has no IPv6.
fn ipv6_missing(err: &io::Error) -> bool {
    const EAFNOSUPPORT: i32 = 97; // Linux: the kernel was built or booted without IPv6
    err.kind() == io::ErrorKind::AddrNotAvailable || err.raw_os_error() == Some(EAFNOSUPPORT)
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
    let connections = Connections::new(MAX_CONNECTIONS, MAX_UNSENT);
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
        let admitted = connections.admit();
        tokio::spawn(secured(stream, peer, admitted, Arc::clone(&state)));
        // Lets the new connection read the request that came with it before a burst of others
        // is accepted: a request in progress is never pushed out.
        tokio::task::yield_now().await;
    }
}

/// Serves one connection, over TLS when the web config had a TLS section at start (as in the
/// toolkit, turning TLS on or off takes a restart), with the TLS settings as they are now: a
/// renewed certificate serves the next connection. While the file is broken, or has lost its
/// TLS section, a TLS server takes no connection rather than fall back to plaintext.
async fn secured(stream: TcpStream, peer: SocketAddr, mut admitted: Admitted, state: Arc<State>) {
    let Some(web) = state.web.as_ref().filter(|w| w.serves_tls()) else {
        return connection(stream, peer, admitted, state, Protocol::Http1).await;
    };
    // Pushed out while the handshake is under way, the connection ends at once: a handshake
    // that never comes must not keep its socket past the cap.
    let handshake = async {
        let tls = web.settings().await.ok().and_then(|s| s.tls.clone());
        let Some(tls) = tls else {
            return Err("the web config is broken or has no TLS section".to_string());
        };
        let acceptor = TlsAcceptor::from(Arc::clone(&tls.config));
        let stream = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
            .await
            .map_err(|_| "TLS handshake not done in time".to_string())?
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let client = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        if !tls.allows(client) {
            return Err("client certificate without an allowed SAN".into());
        }
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((stream, h2))
    };
    let stream = tokio::select! {
        done = handshake => done,
        _ = &mut admitted.pushed_out => Err("pushed out during the TLS handshake".into()),
    };
    match stream {
        Ok((stream, h2)) => {
            let protocol = if h2 { Protocol::Http2 } else { Protocol::Http1 };
            connection(stream, peer, admitted, state, protocol).await;
        }
        Err(why) => debug!(%peer, why, "connection closed before a request"),
    }
}

/// How a connection speaks: HTTP/2 only when TLS negotiated it (ALPN), as in the toolkit.
#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

/// Serves one connection until it ends, reaches its lifetime, or is pushed out.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    mut admitted: Admitted,
    state: Arc<State>,
    protocol: Protocol,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = admitted.slot();
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        let in_request = slot.start();
        async move {
            let response = guarded(&req, &state).await;
            Ok::<_, Infallible>(response.map(|body| Body::new(body, in_request)))
        }
    });
    let io = TokioIo::new(stream);
    let conn = async move {
        match protocol {
            Protocol::Http1 => {
                http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(MAX_REQUEST_HEAD)
                    .serve_connection(io, service)
                    .await
            }
            Protocol::Http2 => {
                http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(MAX_STREAMS)
                    .max_header_list_size(MAX_REQUEST_HEAD as u32)
                    .serve_connection(io, service)
                    .await
            }
        }
    };
    tokio::select! {
        ended = tokio::time::timeout(CONNECTION_LIFETIME, conn) => match ended {
            Err(_) => debug!(%peer, "connection closed at the end of its lifetime"),
            Ok(Err(e)) => debug!(%peer, error = %e, "connection ended with an error"),
            Ok(Ok(())) => {}
        },
        why = &mut admitted.pushed_out => match why {
            Ok(PushedOut::Unsent) => info!(
                %peer,
                "connection closed with its answer unread: {MAX_UNSENT} newer answers were \
                 waiting for their clients (a client that stopped reading, or too many scrapes \
                 at once)"
            ),
            _ => debug!(%peer, "idle connection closed to make room for a new one"),
        }
    }
}

/// [`handle`], behind the web config's users and with its headers.
async fn guarded(req: &hyper::Request<Incoming>, state: &Arc<State>) -> Response<Payload> {
    let Some(web) = &state.web else {
        return handle(req, state).await;
    };
    let (mut response, settings) = match web.judge(req.headers().get(AUTHORIZATION)).await {
        Verdict::Allowed(settings) => (handle(req, state).await, settings),
        Verdict::Unauthorized(settings) => {
            let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"vantage\""),
            );
            (response, settings)
        }
        Verdict::Limited(settings) => (
            text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n"),
            settings,
        ),
        Verdict::Broken => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the web config is broken; see the log\n",
            );
        }
    };
    for (name, value) in &settings.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

async fn handle(req: &hyper::Request<Incoming>, state: &Arc<State>) -> Response<Payload> {
    let path = req.uri().path();
    if !matches!(
        path,
        "/metrics" | "/probe" | "/-/healthy" | "/-/ready" | "/-/reload" | "/"
    ) {
        return text(StatusCode::NOT_FOUND, "not found; try /metrics\n");
    }
    if path == "/-/reload" {
        if *req.method() != Method::POST {
            return not_allowed("use POST\n", "POST");
        }
        if !state.lifecycle {
            // As Prometheus answers; SIGHUP and the file watch still reload.
            return text(
                StatusCode::FORBIDDEN,
                "Lifecycle API is not enabled: start vantage with --web.enable-lifecycle\n",
            );
        }
        return reload(state).await;
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return not_allowed("use GET\n", "GET, HEAD");
    }
    match path {
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            let metrics = Arc::clone(&state.metrics);
            if req.version() < Version::HTTP_11 {
                // HTTP/1.0 has no chunks: a streamed answer would end by closing, and a
                // rendering cut short would look complete. Whole, it has a Content-Length.
                return render::whole(format.content_type(), move || metrics.render(format)).await;
            }
            let encodings = req.headers().get_all(ACCEPT_ENCODING).iter();
            let gzip = render::accepts_gzip(encodings.filter_map(|v| v.to_str().ok()));
            render::metrics(metrics, format, gzip).await
        }
        "/probe" => {
            let Some(endpoint) = &state.probe else {
                return text(
                    StatusCode::FORBIDDEN,
                    "/probe is not enabled: start vantage with --web.enable-probe\n",
                );
            };
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let query = req.uri().query().unwrap_or_default();
            let (status, content_type, body) = endpoint
                .answer(query, req.headers(), Format::negotiate(accept))
                .await;
            respond(status, content_type, body)
        }
        "/-/healthy" => text(StatusCode::OK, "vantage is healthy.\n"),
        "/-/ready" if state.ready.load(Ordering::Acquire) => {
            text(StatusCode::OK, "vantage is ready.\n")
        }
        "/-/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "vantage is not ready.\n"),
        _ => {
            let store = Arc::clone(&state.store);
            render::whole("text/html; charset=utf-8", move || {
                status_page::render(&store)
            })
            .await
        }
    }
}

/// Asks for a reload and answers with its result: 200 when applied, 400 with the errors when
/// the file is bad (the previous config keeps running).
async fn reload(state: &State) -> Response<Payload> {
    let (reply, result) = oneshot::channel();
    let request = Request {
        trigger: Trigger::Api,
        reply: Some(reply),
    };
    // Either side closed means the reload loop has ended: vantage is shutting down.
    let result = match state.reloads.send(request).await {
        Ok(()) => result.await.ok(),
        Err(_) => None,
    };
    match result {
        Some(Ok(Reloaded::Applied(c))) => respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            format!(
                "config reloaded: {} added, {} changed, {} removed, {} unchanged\n",
                c.added, c.changed, c.removed, c.unchanged
            ),
        ),
        Some(Ok(Reloaded::Unchanged)) => text(StatusCode::OK, "config unchanged\n"),
        Some(Err(errors)) => respond(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            format!("config not reloaded; the previous config keeps running:\n{errors}\n"),
        ),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "vantage is shutting down\n",
        ),
    }
}

fn not_allowed(body: &'static str, allow: &'static str) -> Response<Payload> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, body);
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}
