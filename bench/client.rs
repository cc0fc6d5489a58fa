//! A small HTTP/1.1 client on hyper: kept-alive connections for driving blackbox_exporter's
//! `/probe`, and one-off GETs for `/metrics`, plain or gzip-compressed as Prometheus asks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// What Prometheus asks for when it scrapes (blackbox_exporter answers in its text format).
const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// No request of the benchmark may take longer than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Connection {
    addr: SocketAddr,
    sender: SendRequest<Empty<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Connection, String> {
        let stream = timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(Connection { addr, sender })
    }

    /// GETs `path` on this connection: the status and the whole body, as it came on the wire
    /// (still compressed if `gzip` and the server compressed it).
    pub async fn get(&mut self, path: &str, gzip: bool) -> Result<(u16, Bytes), String> {
        let mut request = http::Request::get(path)
            .header(http::header::HOST, self.addr.to_string())
            .header(http::header::ACCEPT, ACCEPT);
        if gzip {
            // What Prometheus sends with every scrape.
            request = request.header(http::header::ACCEPT_ENCODING, "gzip");
        }
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        let exchange = async {
            self.sender.ready().await.map_err(|e| e.to_string())?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("GET {path} on {} timed out", self.addr))?
    }
}

/// One GET on a new connection; the time is from the connect to the body's last byte.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    gzip: bool,
) -> Result<(u16, Bytes, Duration), String> {
    let started = Instant::now();
    let (status, body) = Connection::open(addr).await?.get(path, gzip).await?;
    Ok((status, body, started.elapsed()))
}

/// GET that must answer 200: the body as on the wire, and the time it took.
pub async fn get_ok(addr: SocketAddr, path: &str, gzip: bool) -> Result<(Bytes, Duration), String> {
    let (status, body, took) = get(addr, path, gzip).await?;
    if status != 200 {
        return Err(format!("GET {path} on {addr}: status {status}"));
    }
    Ok((body, took))
}
