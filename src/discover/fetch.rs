//! One poll of an `http_sd` server, as Prometheus' HTTP SD polls: `GET` with the refresh
//! interval in `X-Prometheus-Refresh-Interval-Seconds` and, once the server gave an `ETag`,
//! `If-None-Match`, so that an unchanged list costs a 304. One connection per poll, closed after
//! it (`Connection: close`): polls are minutes apart.

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, timeout_at};

use crate::config::sources::HttpSd;
use crate::push::send::connect;

/// How much of a refusal's body the log shows.
const SHOWN_BODY: usize = 512;

/// What the server answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// 304: the list has not changed since the one with this `ETag`.
    NotModified,
    List {
        text: String,
        etag: Option<String>,
    },
}

/// Polls the server once, within its timeout; an answer of more than `limit` bytes is not
/// read.
pub async fn fetch(http: &HttpSd, etag: Option<&str>, limit: usize) -> Result<Answer, String> {
    let deadline = Instant::now() + http.endpoint.timeout;
    timeout_at(deadline, exchange(http, etag, limit, deadline))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no whole answer within the timeout ({:?})",
                http.endpoint.timeout
            ))
        })
}

async fn exchange(
    http: &HttpSd,
    etag: Option<&str>,
    limit: usize,
    deadline: Instant,
) -> Result<Answer, String> {
    let e = &http.endpoint;
    let mut sender = connect(&e.host, e.port, e.tls.as_ref(), deadline).await?;
    let target = e.url.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::get(target)
        .header(header::ACCEPT, "application/json")
        .header(header::CONNECTION, "close")
        .header(
            header::USER_AGENT,
            concat!("vantage/", env!("CARGO_PKG_VERSION")),
        )
        .header(
            "X-Prometheus-Refresh-Interval-Seconds",
            http.refresh_interval.as_secs().to_string(),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("building the request: {e}"))?;
    e.add_headers(request.headers_mut());
    if let Some(etag) = etag.and_then(|t| HeaderValue::try_from(t).ok()) {
        request.headers_mut().insert(header::IF_NONE_MATCH, etag);
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED {
        return Ok(Answer::NotModified);
    }
    let etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = response.into_body();
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the answer: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if read.len() + data.len() > limit {
                return Err(format!(
                    "the answer is larger than {limit} bytes, more than max_targets entries \
                     need: not read"
                ));
            }
            read.extend_from_slice(&data);
        }
    }
    if status != StatusCode::OK {
        let shown = String::from_utf8_lossy(&read[..read.len().min(SHOWN_BODY)]);
        return Err(format!("answered {status}: {}", shown.trim()));
    }
    let text = String::from_utf8(read).map_err(|_| "the answer is not UTF-8".to_string())?;
    Ok(Answer::List { text, etag })
}
