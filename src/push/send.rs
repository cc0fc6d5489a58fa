//! Sending batches to one receiver: an HTTP/1.1 connection kept open between sends, retries
//! with backoff on 5xx, 429 and network errors (a `Retry-After` honoured), none on other
//! refusals, which are logged with the receiver's answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout_at};
use tracing::{debug, info, warn};

use super::queue::{Next, Sample, Stats};
use super::remote::{Remote, unix_ms};
use super::wire;
use crate::config::remote_write::RemoteWrite;
use crate::net::{Host, IpVersion, resolve};
use crate::outcome::Trace;
use crate::tls::{Handshake, TlsTarget};

/// The longest `Retry-After` obeyed: a receiver that asks for an hour is more likely wrong
/// than right, and samples keep arriving meanwhile.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How much of a refusal's body the log shows.
const SHOWN_BODY: usize = 512;
/// How much of any answer's body is read before the connection is given up instead.
const READ_BODY: usize = 64 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Takes batches from the remote's queue and sends them until the queue closes and is empty.
pub async fn run(remote: Arc<Remote>) {
    let mut client = Client::default();
    loop {
        let next = remote
            .queue
            .next_batch(|| {
                let settings = remote.settings();
                (
                    settings.queue.max_samples_per_send,
                    settings.queue.batch_send_deadline,
                )
            })
            .await;
        let Next::Batch(batch) = next else {
            return;
        };
        remote.in_flight.store(batch.len(), Ordering::Relaxed);
        deliver(&remote, &mut client, &batch).await;
        remote.in_flight.store(0, Ordering::Relaxed);
    }
}

/// Sends one batch until the receiver accepts or refuses it for good. While closing, it gives
/// up when the shutdown's time is over, counting the batch as failed.
async fn deliver(remote: &Remote, client: &mut Client, batch: &[Sample]) {
    let body = Bytes::from(wire::encode(batch));
    let n = batch.len();
    let mut backoff: Option<Duration> = None;
    let mut failing_since: Option<Instant> = None;
    loop {
        let settings = remote.settings();
        let began = remote.generation();
        let answer = client.send(&settings, body.clone()).await;
        let wait = match answer {
            Ok((status, _, _)) if status.is_success() => {
                Stats::add(&remote.stats.sent, n);
                let now = unix_ms(SystemTime::now());
                remote.stats.last_send_ms.store(now, Ordering::Relaxed);
                let newest = batch.iter().map(|s| s.timestamp_ms).max().unwrap_or(0);
                remote
                    .stats
                    .highest_sent_ms
                    .fetch_max(u64::try_from(newest).unwrap_or(0), Ordering::Relaxed);
                if let Some(since) = failing_since {
                    info!(remote = %settings.name, url = %settings.endpoint.shown_url, failing_for = ?since.elapsed(), "remote_write receiver accepts samples again");
                }
                return;
            }
            Ok((status, retry_after, text))
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() =>
            {
                let log = failing_since.is_none();
                if log {
                    warn!(remote = %settings.name, url = %settings.endpoint.shown_url, status = status.as_u16(), answer = %text, "remote_write receiver cannot take samples now; retrying");
                } else {
                    debug!(remote = %settings.name, status = status.as_u16(), "remote_write retry refused");
                }
                // A zero (or a date gone by) would retry at once, again and again: as in
                // Prometheus, only a real wait replaces the backoff.
                retry_after
                    .filter(|d| !d.is_zero())
                    .map(|d| d.min(MAX_RETRY_AFTER))
            }
            Ok((status, _, text)) => {
                Stats::add(&remote.stats.failed, n);
                warn!(remote = %settings.name, url = %settings.endpoint.shown_url, status = status.as_u16(), answer = %text, samples = n, "remote_write receiver refused samples; not retrying them");
                return;
            }
            Err(error) => {
                if failing_since.is_none() {
                    warn!(remote = %settings.name, url = %settings.endpoint.shown_url, %error, "cannot send to the remote_write receiver; retrying");
                } else {
                    debug!(remote = %settings.name, %error, "remote_write retry failed");
                }
                None
            }
        };
        failing_since.get_or_insert_with(Instant::now);
        let next = backoff.map_or(settings.queue.min_backoff, |b| {
            (b * 2).min(settings.queue.max_backoff)
        });
        backoff = Some(next);
        let wait = wait.unwrap_or(next);
        if remote.queue.is_closing() && Instant::now() + wait > remote.shutdown_deadline() {
            Stats::add(&remote.stats.failed, n);
            warn!(remote = %settings.name, url = %settings.endpoint.shown_url, samples = n, "shutting down before the remote_write receiver took these samples");
            return;
        }
        Stats::add(&remote.stats.retried, n);
        remote.sleep(wait, began).await;
    }
}

/// One kept-open connection to the receiver, made again when it closes, and when a reload
/// changed the settings it was made with (another URL, other TLS files).
#[derive(Default)]
struct Client {
    connection: Option<(u64, SendRequest<Full<Bytes>>)>,
}

/// The status, `Retry-After` and the start of the body of an answer.
type Answer = (StatusCode, Option<Duration>, String);

impl Client {
    /// Sends one request within the receiver's `timeout`, connecting first if need be.
    async fn send(&mut self, settings: &RemoteWrite, body: Bytes) -> Result<Answer, String> {
        let deadline = Instant::now() + settings.endpoint.timeout;
        let result = timeout_at(deadline, self.exchange(settings, body, deadline)).await;
        let answer = match result {
            Err(_) => Err(format!(
                "no answer within the timeout ({:?})",
                settings.endpoint.timeout
            )),
            Ok(answer) => answer,
        };
        if answer.is_err() {
            // Whatever state the connection is in, the next try starts afresh.
            self.connection = None;
        }
        answer
    }

    async fn exchange(
        &mut self,
        settings: &RemoteWrite,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Answer, String> {
        let mut reusable = false;
        if let Some((made_with, sender)) = &mut self.connection
            && *made_with == settings.fingerprint
        {
            // Waits for the connection to take a request, which it may not have said yet.
            reusable = sender.ready().await.is_ok();
        }
        if !reusable {
            // Dropping the old sender lets its connection end.
            self.connection = None;
            let tls = settings.endpoint.tls.as_ref();
            let sender = connect(
                &settings.endpoint.host,
                settings.endpoint.port,
                tls,
                deadline,
            )
            .await?;
            self.connection = Some((settings.fingerprint, sender));
        }
        let (_, sender) = self.connection.as_mut().expect("connected above");
        // The origin form (path and query), as a client that is not talking to a proxy sends.
        let target = settings
            .endpoint
            .url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut request = Request::post(target)
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(
                header::USER_AGENT,
                concat!("vantage/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| format!("building the request: {e}"))?;
        settings.endpoint.add_headers(request.headers_mut());
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        // The status decides; the body is only shown. One too long or cut short costs the
        // connection (it cannot carry another request), never the answer.
        let mut body = response.into_body();
        let mut start = Vec::new();
        let mut read = 0;
        let whole = loop {
            match body.frame().await {
                None => break true,
                Some(Err(_)) => break false,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        read += data.len();
                        let room = SHOWN_BODY.saturating_sub(start.len());
                        start.extend_from_slice(&data[..data.len().min(room)]);
                    }
                    if read > READ_BODY {
                        break false;
                    }
                }
            }
        };
        if !whole {
            self.connection = None;
        }
        let shown = String::from_utf8_lossy(&start).trim().to_string();
        Ok((status, retry_after, shown))
    }
}

/// Connects to `host` and `port` (TLS, verified, when `tls` is given), and starts HTTP/1.1
/// over it: for the receivers, and for the `http_sd` servers.
pub(crate) async fn connect(
    host: &Host,
    port: u16,
    tls: Option<&TlsTarget>,
    deadline: Instant,
) -> Result<SendRequest<Full<Bytes>>, String> {
    let mut trace = Trace::start();
    let tcp = resolve::open(host, port, IpVersion::Auto, None, deadline, &mut trace)
        .await
        .map_err(|f| f.to_string())?;
    let stream: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(tls) => {
            let mut seen = None;
            match tls.handshake(tcp, deadline, &mut trace, &mut seen).await {
                Handshake::Done(stream) => {
                    // Nothing is sent before the verdict: no credentials reach a server that
                    // failed verification.
                    if let Some(facts) = &seen {
                        tls.verdict(facts).map_err(|f| f.to_string())?;
                    }
                    Box::new(stream)
                }
                Handshake::Failed { failure, .. } => return Err(failure.to_string()),
            }
        }
    };
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("starting HTTP: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "HTTP connection ended");
        }
    });
    Ok(sender)
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::format_description::well_known::Rfc2822;
    let at = time::OffsetDateTime::parse(text, &format)
        .or_else(|_| time::OffsetDateTime::parse(&text.replace("GMT", "+0000"), &format))
        .ok()?;
    let now = time::OffsetDateTime::now_utc();
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
        let in_a_minute = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
        let date = in_a_minute
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap()
            .replace("+0000", "GMT");
        let wait = retry_after(&date).unwrap();
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{date}: {wait:?}"
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past: retry now"
        );
    }
}
