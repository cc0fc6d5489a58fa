//! The HTTP probe: one request per hop over our own TCP (and TLS) stream, driven by hyper's
//! connection API, so that lookup, connect, handshake, time to first byte and the whole answer
//! are timed apart, and the TLS facts and verdicts are those of the TLS probe.
//!
//! Every hop is a new connection (no reuse, `Connection: close`), and ends with the same gentle
//! close as the TCP probe. With `verify` on, a request never goes over a connection whose
//! certificate failed verification: `tcp::secure` hands out only verified streams.

pub mod config;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;

mod head;
mod lent;
pub mod metrics;
pub mod report;
mod status;
pub mod url;

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, LOCATION, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use regex::bytes::Regex;

use tokio::time::{Instant, timeout_at};

use super::tcp::stream::secure;
use crate::net::close::{CLOSE_GRACE, Closable, close};
use crate::net::{self, Host, IpVersion, dns};
use crate::outcome::{Failure, Outcome, Phases, Reason, ReasonSet, Trace, quote};
use crate::tls::{TlsClient, TlsFacts, TlsTarget};
pub use status::StatusCodes;
pub use url::{Scheme, Url};

/// Redirects followed at most, as browsers and blackbox_exporter do.
pub const MAX_REDIRECTS: usize = 10;

pub const USER_AGENT_VALUE: &str = concat!("vantage/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone)]
pub struct HttpProbe {
    pub url: Url,
    /// The URL as configured: the `target` label.
    pub written: String,
    pub method: Method,
    pub headers: Vec<Header>,
    pub body: Bytes,
    pub valid_status_codes: Vec<StatusCodes>,
    pub body_regex: Option<Regex>,
    pub body_not_regex: Option<Regex>,
    pub body_size_limit: u64,
    pub follow_redirects: bool,
    pub ip_version: IpVersion,
    /// `dns.server`: the resolver of every hop's host; `None` for the system's.
    pub resolver: Option<dns::Server>,
    /// The address requests to the configured host connect to instead of resolving it, in a
    /// run that probes every address (`addresses: all`); redirects elsewhere still resolve.
    pub pinned: Option<IpAddr>,
    /// The TLS client of https requests to the configured host, named as `tls.server_name`
    /// says (by default the host).
    pub tls: TlsTarget,
    /// The TLS client for other hosts that redirects lead to: the same options without the
    /// client certificate, which is the configured host's alone. Each such host is verified
    /// (and sent as SNI) by its own name.
    pub tls_elsewhere: Arc<TlsClient>,
}

/// The protocols an https hop offers through ALPN: HTTP/2 first when asked for. Offering
/// `http/1.1` alone still matters: a server that speaks both then knows not to expect h2.
pub fn alpn(http2: bool) -> Vec<Vec<u8>> {
    let mut protocols = Vec::new();
    if http2 {
        protocols.push(b"h2".to_vec());
    }
    protocols.push(b"http/1.1".to_vec());
    protocols
}

/// A request header from the config. Secrets (read from a file, or credentials by their name)
/// are marked sensitive, which keeps them out of every `Debug` output, and are sent only to the
/// configured URL's origin, never to a host that a redirect leads to.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: HeaderName,
    pub value: HeaderValue,
    pub secret: bool,
}

/// What the HTTP exchanges of an attempt showed: one hop per request, redirects included.
#[derive(Debug, Clone, Default)]
pub struct HttpFacts {
    pub hops: Vec<Hop>,
    /// What the last https hop's TLS handshake revealed.
    pub tls: Option<TlsFacts>,
}

impl HttpFacts {
    /// The last answer's status.
    pub fn status(&self) -> Option<u16> {
        self.hops.last()?.status
    }

    pub fn version(&self) -> Option<Version> {
        self.hops.last()?.version
    }

    /// Redirects followed: every hop after the first.
    pub fn redirects(&self) -> usize {
        self.hops.len().saturating_sub(1)
    }
}

/// One request and its answer.
#[derive(Debug, Clone)]
pub struct Hop {
    pub method: Method,
    pub url: Url,
    pub address: Option<SocketAddr>,
    pub phases: Phases,
    pub status: Option<u16>,
    pub version: Option<Version>,
    pub location: Option<String>,
    /// The body length the answer declared (`Content-Length`), if it did.
    pub content_length: Option<u64>,
    /// The answer's `Last-Modified`, as Unix seconds.
    pub last_modified: Option<i64>,
    /// Body bytes read (after the transfer coding, as the application gets them); the read
    /// stops past `body_size_limit`.
    pub body_bytes: u64,
    pub body_cut: bool,
    /// From the answer's first byte to the end of its body.
    pub transfer: Option<Duration>,
    /// This hop's events in the trace (its close); past its end once a stored run has forgotten
    /// them.
    pub events: Range<usize>,
}

/// A request to make: the first, or one a redirect asks for.
struct Request {
    url: Url,
    method: Method,
    body: Bytes,
    /// Whether secret headers go along: only while on the configured origin.
    credentials: bool,
    /// A redirect turned the request into a GET: the configured body is gone, and so are the
    /// headers that describe it (`Content-Type` and the like).
    body_dropped: bool,
}

/// A response as far as it was read.
struct Answer {
    status: u16,
    version: Version,
    location: Option<String>,
    content_length: Option<u64>,
    last_modified: Option<i64>,
    /// From the request handed to hyper to the response head parsed, and to the body's end.
    head_after: Duration,
    body_after: Duration,
    /// From the first byte to the body's end: `body_after` less the time to the first byte.
    transfer: Duration,
    /// The bytes kept for the body regexes (none without them), at most `body_size_limit`.
    kept: Vec<u8>,
    body_bytes: u64,
    body_cut: bool,
}

impl HttpProbe {
    /// `check-config`'s words for what this probe does beyond its URL.
    pub fn summary(&self) -> String {
        let mut out = format!(", {}", self.method);
        if !self.headers.is_empty() {
            let names: Vec<String> = self
                .headers
                .iter()
                .map(|h| {
                    let secret = if h.secret { " (secret)" } else { "" };
                    format!("{}{secret}", h.name)
                })
                .collect();
            out.push_str(&format!(" with {}", names.join(", ")));
        }
        if !self.follow_redirects {
            out.push_str(", redirects not followed");
        }
        if self.url.scheme == Scheme::Https {
            out.push_str(&self.tls.summary());
        }
        out
    }

    /// The same check against another URL.
    pub fn retarget(&self, address: &str) -> Result<HttpProbe, String> {
        let url = Url::parse(address.trim())?;
        url.host.check_destination()?;
        Ok(HttpProbe {
            tls: self.tls.client.target(&url.host)?,
            url,
            written: address.trim().to_string(),
            ..self.clone()
        })
    }

    /// Every reason a run of this probe can end with: TLS ones too, since even an http URL may
    /// redirect to https.
    pub fn reasons(&self) -> ReasonSet {
        net::CONNECT_REASONS
            .union(crate::tls::REASONS)
            .union(ReasonSet::of(&[
                Reason::HttpStatus,
                Reason::HttpBodyMismatch,
            ]))
    }

    pub async fn attempt(&self, deadline: Instant) -> Outcome<HttpFacts> {
        let mut trace = Trace::start();
        let mut facts = HttpFacts::default();
        let result = self.follow(deadline, &mut trace, &mut facts).await;
        trace.phases = facts
            .hops
            .iter()
            .fold(Phases::default(), |sum, hop| sum.plus(&hop.phases));
        Outcome::with_facts(result, trace, facts)
    }

    /// Requests the URL, and each redirect's target in turn, then judges the last answer.
    async fn follow(
        &self,
        deadline: Instant,
        trace: &mut Trace,
        facts: &mut HttpFacts,
    ) -> Result<(), Failure> {
        let mut request = Request {
            url: self.url.clone(),
            method: self.method.clone(),
            body: self.body.clone(),
            credentials: true,
            body_dropped: false,
        };
        loop {
            trace.phases = Phases::default();
            trace.address = None;
            trace.answered = None;
            let first_event = trace.events.len();
            let answer = self.hop(&request, deadline, trace, &mut facts.tls).await;
            facts.hops.push(Hop {
                method: request.method.clone(),
                url: request.url.clone(),
                address: trace.address,
                phases: trace.phases,
                status: answer.as_ref().ok().map(|a| a.status),
                version: answer.as_ref().ok().map(|a| a.version),
                location: answer.as_ref().ok().and_then(|a| a.location.clone()),
                content_length: answer.as_ref().ok().and_then(|a| a.content_length),
                last_modified: answer.as_ref().ok().and_then(|a| a.last_modified),
                body_bytes: answer.as_ref().map_or(0, |a| a.body_bytes),
                body_cut: answer.as_ref().is_ok_and(|a| a.body_cut),
                transfer: answer.as_ref().ok().map(|a| a.transfer),
                events: first_event..trace.events.len(),
            });
            let hops = facts.hops.len();
            let answer = answer.map_err(|mut failure| {
                if hops > 1 {
                    failure.detail = format!("{} (after {} redirects)", failure.detail, hops - 1);
                }
                failure
            })?;
            let location = match &answer.location {
                Some(location) if self.follow_redirects && is_redirect(answer.status) => location,
                _ => return self.judge(&answer),
            };
            if facts.hops.len() > MAX_REDIRECTS {
                return Err(Failure::new(
                    Reason::HttpStatus,
                    format!(
                        "stopped after {MAX_REDIRECTS} redirects (a loop?); the last answer was {} to {location}",
                        answer.status
                    ),
                ));
            }
            let next = request.url.join(location).map_err(|e| {
                Failure::new(
                    Reason::HttpStatus,
                    format!("{} redirects to an unusable Location: {e}", answer.status),
                )
            })?;
            request = redirected(request, next, answer.status);
        }
    }

    fn judge(&self, answer: &Answer) -> Result<(), Failure> {
        if !self
            .valid_status_codes
            .iter()
            .any(|codes| codes.contains(answer.status))
        {
            let valid: Vec<String> = self
                .valid_status_codes
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(Failure::new(
                Reason::HttpStatus,
                format!("status {}, expected {}", answer.status, valid.join(", ")),
            ));
        }
        let read = if answer.body_cut {
            format!("the first {} bytes of the body", answer.kept.len())
        } else {
            format!("the body ({} bytes)", answer.kept.len())
        };
        if let Some(regex) = &self.body_regex
            && !regex.is_match(&answer.kept)
        {
            return Err(body_mismatch(
                format!("/{regex}/ does not match {read}"),
                &answer.kept,
            ));
        }
        if let Some(regex) = &self.body_not_regex
            && let Some(found) = regex.find(&answer.kept)
        {
            return Err(body_mismatch(
                format!("body_not_regex /{regex}/ matches {read}"),
                &answer.kept[found.start()..],
            ));
        }
        Ok(())
    }

    /// One request on a new connection: resolve, connect, TLS for https, exchange, close.
    async fn hop(
        &self,
        request: &Request,
        deadline: Instant,
        trace: &mut Trace,
        seen: &mut Option<TlsFacts>,
    ) -> Result<Answer, Failure> {
        let url = &request.url;
        let host = match self.pinned {
            Some(ip) if url.same_host(&self.url) => Host::Ip(ip),
            _ => url.host.clone(),
        };
        let stream = net::open(
            &host,
            url.port,
            self.ip_version,
            self.resolver,
            deadline,
            trace,
        )
        .await?;
        if url.scheme == Scheme::Http {
            return self.exchange(stream, request, false, deadline, trace).await;
        }
        let elsewhere;
        let tls = if url.same_host(&self.url) {
            &self.tls
        } else {
            elsewhere = self
                .tls_elsewhere
                .target_by_host(&url.host)
                .map_err(|e| Failure::new(Reason::TlsHandshakeFailed, e))?;
            &elsewhere
        };
        let stream = secure(tls, stream, deadline, trace, seen).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        self.exchange(stream, request, h2, deadline, trace).await
    }

    /// Sends the request and reads the answer over `stream`, then closes it gently.
    async fn exchange<S>(
        &self,
        stream: S,
        request: &Request,
        h2: bool,
        deadline: Instant,
        trace: &mut Trace,
    ) -> Result<Answer, Failure>
    where
        S: Closable + Send + 'static,
    {
        let message = match self.message(request, h2) {
            Ok(message) => message,
            Err(failure) => {
                let _ = close(stream, deadline, trace).await;
                return Err(failure);
            }
        };
        let (lender, lent) = lent::lend(stream);
        let io = TokioIo::new(lent);

        let answer = if h2 {
            let handshake = http2::Builder::new(TokioExecutor::new()).handshake(io);
            match timeout_at(deadline, handshake).await {
                Err(_) => Err(Failure::new(
                    Reason::Timeout,
                    "the HTTP/2 connection preface did not go through before the deadline",
                )),
                Ok(Err(e)) => Err(hyper_failure(&e, "starting HTTP/2")),
                Ok(Ok((mut sender, connection))) => {
                    let response = sender.send_request(message);
                    // No second request: without a sender the connection winds down by itself.
                    drop(sender);
                    drive(connection, self.answer(response, deadline), deadline).await
                }
            }
        } else {
            match http1::Builder::new().handshake(io).await {
                Err(e) => Err(hyper_failure(&e, "starting HTTP/1.1")),
                Ok((mut sender, connection)) => {
                    let response = sender.send_request(message);
                    // No second request: without a sender the connection winds down by itself.
                    drop(sender);
                    drive(connection, self.answer(response, deadline), deadline).await
                }
            }
        };
        let answer = answer.map(|mut answer| {
            trace.answered = Some(trace.elapsed());
            let first_byte = if h2 {
                // The server's SETTINGS frame comes before any answer: the head is the mark.
                answer.head_after
            } else {
                lender.first_byte().unwrap_or(answer.head_after)
            };
            trace.phases.first_byte = first_byte.into();
            answer.transfer = answer.body_after.saturating_sub(first_byte);
            if self.body_regex.is_none() && self.body_not_regex.is_none() {
                answer.kept = Vec::new();
            }
            answer
        });
        let grace_end = deadline.min(Instant::now() + CLOSE_GRACE);
        if let Some(stream) = lender.take_back(grace_end).await {
            // The answer is the check; a server that resets after answering has still answered.
            let _ = close(stream, deadline, trace).await;
        }
        answer
    }

    /// The request to send. A configured `Host` applies on the configured origin only: a host
    /// reached by redirect gets its own name, as it gets no credentials.
    fn message(&self, request: &Request, h2: bool) -> Result<http::Request<Full<Bytes>>, Failure> {
        let url = &request.url;
        let on_origin = request.credentials;
        let host = self
            .headers
            .iter()
            .find(|h| h.name == HOST && on_origin)
            .and_then(|h| h.value.to_str().ok().map(str::to_string))
            .unwrap_or_else(|| url.authority());
        let mut builder = http::Request::builder().method(request.method.clone());
        if h2 {
            // HTTP/2 carries the host as `:authority`, taken from an absolute URI.
            builder = builder.uri(format!(
                "{}://{host}{}",
                url.scheme.as_str(),
                url.path_and_query
            ));
        } else {
            builder = builder
                .uri(url.path_and_query.clone())
                .header(CONNECTION, "close")
                .header(HOST, host);
        }
        if !self.headers.iter().any(|h| h.name == USER_AGENT) {
            builder = builder.header(USER_AGENT, USER_AGENT_VALUE);
        }
        for header in &self.headers {
            let withheld = (header.secret && !on_origin)
                || (request.body_dropped && header.name.as_str().starts_with("content-"));
            if header.name != HOST && !withheld {
                builder = builder.header(header.name.clone(), header.value.clone());
            }
        }
        // The config validates every part, so this fails only on a bug; fail the run, not the
        // process.
        builder
            .body(Full::new(request.body.clone()))
            .map_err(|e| Failure::new(Reason::IoError, format!("building the request: {e}")))
    }

    /// Waits for the response head, then reads the body up to the size limit.
    async fn answer(
        &self,
        response: impl Future<Output = hyper::Result<http::Response<Incoming>>>,
        deadline: Instant,
    ) -> Result<Answer, Failure> {
        let sent = Instant::now();
        let response = match timeout_at(deadline, response).await {
            Err(_) => {
                return Err(Failure::new(
                    Reason::Timeout,
                    "no response headers before the deadline",
                ));
            }
            Ok(Err(e)) => return Err(hyper_failure(&e, "waiting for the response")),
            Ok(Ok(response)) => response,
        };
        let head_after = sent.elapsed();
        let status = response.status();
        let version = response.version();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
        let content_length = head::content_length(response.headers());
        let last_modified = head::last_modified(response.headers());
        let keep = self.body_regex.is_some() || self.body_not_regex.is_some();
        let limit = usize::try_from(self.body_size_limit).unwrap_or(usize::MAX);
        let mut body = response.into_body();
        let mut kept = Vec::new();
        let mut body_bytes: u64 = 0;
        let body_cut = loop {
            if body_bytes > self.body_size_limit {
                break true;
            }
            let frame = match timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    return Err(Failure::new(
                        Reason::Timeout,
                        format!(
                            "status {}, but the body did not end before the deadline ({body_bytes} bytes read)",
                            status.as_u16()
                        ),
                    ));
                }
                Ok(None) => break false,
                Ok(Some(Err(e))) => return Err(hyper_failure(&e, "reading the body")),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                body_bytes += data.len() as u64;
                if keep && kept.len() < limit {
                    let room = limit - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        };
        Ok(Answer {
            status: status.as_u16(),
            version,
            location,
            content_length,
            last_modified,
            head_after,
            body_after: sent.elapsed(),
            transfer: Duration::ZERO,
            kept,
            body_bytes,
            body_cut,
        })
    }
}

/// Polls hyper's connection alongside the exchange until the exchange is done, then gives the
/// connection a moment (within the deadline) to finish what it owes: the end of an HTTP/1.1
/// message, an HTTP/2 GOAWAY.
async fn drive<C>(
    connection: C,
    exchange: impl Future<Output = Result<Answer, Failure>>,
    deadline: Instant,
) -> Result<Answer, Failure>
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut connection = pin!(connection);
    let mut exchange = pin!(exchange);
    let mut connection_done = false;
    let answer = loop {
        tokio::select! {
            biased;
            answer = &mut exchange => break answer,
            // Its error reaches the exchange too, as the failed request or body.
            _ = &mut connection, if !connection_done => connection_done = true,
        }
    };
    if !connection_done {
        let grace_end = deadline.min(Instant::now() + CLOSE_GRACE);
        let _ = timeout_at(grace_end, connection).await;
    }
    answer
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The request a redirect asks for. 303, and 301/302 after a POST, turn into a GET without a
/// body (as browsers do); 307 and 308 repeat the request as it was.
fn redirected(previous: Request, url: Url, status: u16) -> Request {
    let becomes_get = match status {
        303 => previous.method != Method::HEAD,
        301 | 302 => previous.method == Method::POST,
        _ => false,
    };
    let (method, body) = if becomes_get {
        (Method::GET, Bytes::new())
    } else {
        (previous.method, previous.body)
    };
    Request {
        credentials: previous.credentials && previous.url.same_origin(&url),
        body_dropped: previous.body_dropped || becomes_get,
        url,
        method,
        body,
    }
}

/// Classifies a hyper error: socket and TLS errors by their kind, the rest as `io_error` with
/// hyper's own words and their causes.
fn hyper_failure(err: &hyper::Error, doing: &str) -> Failure {
    let mut source = std::error::Error::source(err);
    let mut words = err.to_string();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return crate::tls::failure(io, doing);
        }
        words = format!("{words}: {cause}");
        source = cause.source();
    }
    let what = if err.is_incomplete_message() {
        "the server closed the connection before a complete response".to_string()
    } else if err.is_parse() {
        format!("the answer is not valid HTTP ({words})")
    } else {
        words
    };
    Failure::new(Reason::IoError, format!("{doing}: {what}"))
}

fn body_mismatch(what: String, body: &[u8]) -> Failure {
    Failure::new(Reason::HttpBodyMismatch, format!("{what}: {}", quote(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, url: &str) -> Request {
        Request {
            url: Url::parse(url).unwrap(),
            method,
            body: Bytes::from_static(b"payload"),
            credentials: true,
            body_dropped: false,
        }
    }

    #[test]
    fn redirects_change_the_method_as_browsers_do() {
        let next = || Url::parse("https://a.example/next").unwrap();
        let post = || request(Method::POST, "https://a.example/form");
        let after = |status| redirected(post(), next(), status);
        assert_eq!(after(303).method, Method::GET);
        assert!(after(303).body.is_empty() && after(303).body_dropped);
        assert!(!after(307).body_dropped);
        assert_eq!(after(302).method, Method::GET);
        assert_eq!(after(301).method, Method::GET);
        assert_eq!(after(307).method, Method::POST);
        assert_eq!(after(308).body, Bytes::from_static(b"payload"));
        let head = redirected(request(Method::HEAD, "https://a.example/"), next(), 303);
        assert_eq!(head.method, Method::HEAD);
        let put = redirected(request(Method::PUT, "https://a.example/"), next(), 302);
        assert_eq!(put.method, Method::PUT);
    }

    #[test]
    fn credentials_stay_on_the_configured_origin() {
        let start = request(Method::GET, "https://a.example/");
        let same = redirected(start, Url::parse("https://a.example/login").unwrap(), 302);
        assert!(same.credentials);
        let away = redirected(same, Url::parse("https://b.example/").unwrap(), 302);
        assert!(!away.credentials);
        let back = redirected(away, Url::parse("https://a.example/").unwrap(), 302);
        assert!(!back.credentials, "once off the origin, they stay off");
    }
}
