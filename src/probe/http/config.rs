//! The http target's config: its `http` table as written, and the builder that turns it, with
//! the target's shared keys and its `tls` table, into an [`HttpProbe`]. Header files are read
//! here, once per load.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Method};
use regex::bytes::RegexBuilder;
use serde::{Deserialize, Serialize};

use super::{Header, HttpProbe, Scheme, StatusCodes, Url, alpn};
use crate::build::limits::MAX_METHOD_CHARS;
use crate::build::{Common, Context, Location, S, regex_message};
use crate::tls::config::RawTls;
use crate::tls::{TlsClient, TlsOptions, TlsTarget};

pub const DEFAULT_BODY_SIZE_LIMIT: u64 = 1 << 20;
/// Every concurrent HTTP run may hold this much for its body regexes.
pub const MAX_BODY_SIZE_LIMIT: u64 = 64 << 20;
/// Headers that carry credentials even when written inline: kept from other hosts and logs.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];
/// Headers that describe the connection or the framing, which vantage decides.
pub const OWN_HEADERS: [&str; 6] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
];

/// A header value given inline, or read from a file (for tokens that must not sit in the config).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawHeaderValue {
    Value(String),
    File(RawFileRef),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileRef {
    pub file: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub method: Option<S<String>>,
    pub headers: Option<S<BTreeMap<String, S<RawHeaderValue>>>>,
    pub body: Option<S<String>>,
    /// Codes (`200`) or inclusive ranges (`"200-299"`).
    pub valid_status_codes: Option<S<Vec<S<StatusCodes>>>>,
    pub body_regex: Option<S<String>>,
    pub body_not_regex: Option<S<String>>,
    /// Bytes (`1048576`) or with a binary unit (`"1MiB"`).
    pub body_size_limit: Option<S<ByteSize>>,
    pub follow_redirects: Option<bool>,
    pub http2: Option<S<bool>>,
}

/// A size in bytes: a bare number of bytes, or a number with B, KiB, MiB or GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ByteSize(pub u64);

impl ByteSize {
    fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let invalid = || format!("invalid size {text:?}: write bytes, or use B, KiB, MiB or GiB");
        let number: u64 = text[..digits].parse().map_err(|_| invalid())?;
        let scale = match text[digits..].trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(invalid()),
        };
        number
            .checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Bytes(bytes) => Ok(ByteSize(bytes)),
            Written::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// An http target from its shared keys, its `http` table and its `tls` table.
pub fn build(
    cx: &mut Context,
    common: &Common,
    http: Option<&S<RawHttp>>,
    tls: Option<&S<RawTls>>,
) -> Option<HttpProbe> {
    let path = common.path;
    let mut ok = true;
    let Some(written) = common.url else {
        cx.error(&common.at, format!("{path}.url"), "http targets need `url`");
        return None;
    };
    let url = match Url::parse(written.value.trim())
        .and_then(|url| url.host.check_destination().map(|()| url))
    {
        Ok(url) => url,
        Err(e) => {
            cx.error(&written.referenced, format!("{path}.url"), e);
            return None;
        }
    };
    let empty = RawHttp::default();
    let (http, http_at) = match http {
        Some(h) => (&h.value, h.referenced),
        None => (&empty, common.at),
    };
    let hpath = format!("{path}.http");
    let method = match &http.method {
        None => Method::GET,
        Some(m) => match method(&m.value) {
            Ok(method) => method,
            Err(e) => {
                cx.error(&m.referenced, format!("{hpath}.method"), e);
                ok = false;
                Method::GET
            }
        },
    };
    let headers = headers(cx, http, &hpath);
    let valid_status_codes = match &http.valid_status_codes {
        None => vec![StatusCodes::SUCCESS],
        Some(codes) if codes.value.is_empty() => {
            cx.error(
                &codes.referenced,
                format!("{hpath}.valid_status_codes"),
                "list at least one code or range, or leave it out for 200-299",
            );
            ok = false;
            Vec::new()
        }
        Some(codes) => codes.value.iter().map(|c| c.value).collect(),
    };
    let mut regex = |raw: Option<&S<String>>, key: &str| match raw {
        None => Some(None),
        Some(r) => match RegexBuilder::new(&r.value).build() {
            Ok(regex) => Some(Some(regex)),
            Err(e) => {
                cx.error(
                    &r.referenced,
                    format!("{hpath}.{key}"),
                    format!("invalid regex: {}", regex_message(&e)),
                );
                None
            }
        },
    };
    let body_regex = regex(http.body_regex.as_ref(), "body_regex");
    let body_not_regex = regex(http.body_not_regex.as_ref(), "body_not_regex");
    let body_size_limit = match &http.body_size_limit {
        None => DEFAULT_BODY_SIZE_LIMIT,
        Some(limit) if limit.value.0 == 0 || limit.value.0 > MAX_BODY_SIZE_LIMIT => {
            cx.error(
                &limit.referenced,
                format!("{hpath}.body_size_limit"),
                format!("must be from 1 byte to {}MiB", MAX_BODY_SIZE_LIMIT >> 20),
            );
            ok = false;
            DEFAULT_BODY_SIZE_LIMIT
        }
        Some(limit) => limit.value.0,
    };
    let http2 = http.http2.as_ref().is_some_and(|h| h.value);
    if let Some(h2) = &http.http2
        && h2.value
        && url.scheme == Scheme::Http
    {
        cx.error(
            &h2.referenced,
            format!("{hpath}.http2"),
            "HTTP/2 is negotiated through TLS (ALPN): it needs an https URL",
        );
        ok = false;
    }
    let (tls, tls_elsewhere) = clients(cx, tls, &url, http2, http_at, path)?;
    Some(HttpProbe {
        written: written.value.trim().to_string(),
        url,
        method,
        headers: headers?,
        body: http
            .body
            .as_ref()
            .map(|b| Bytes::from(b.value.clone()))
            .unwrap_or_default(),
        valid_status_codes,
        body_regex: body_regex?,
        body_not_regex: body_not_regex?,
        body_size_limit,
        follow_redirects: http.follow_redirects.unwrap_or(true),
        ip_version: common.ip_version,
        resolver: common.resolver?,
        pinned: None,
        tls,
        tls_elsewhere,
    })
    .filter(|_| ok)
}

/// The TLS clients of an http target: every one has them, because even an http URL may
/// redirect to https. The `tls` table sets their options; the second, for other hosts,
/// leaves out the client certificate.
fn clients(
    cx: &mut Context,
    tls: Option<&S<RawTls>>,
    url: &Url,
    http2: bool,
    at: Location,
    path: &str,
) -> Option<(TlsTarget, Arc<TlsClient>)> {
    let tpath = format!("{path}.tls");
    let options = match tls {
        None => TlsOptions::default(),
        Some(raw) => {
            if let Some(starttls) = &raw.value.starttls {
                cx.error(
                    &starttls.referenced,
                    format!("{tpath}.starttls"),
                    "starttls applies to tcp targets; http targets use an https URL",
                );
                return None;
            }
            match crate::tls::config::options(cx, raw, &tpath)? {
                Some(options) => options,
                None if url.scheme == Scheme::Https => {
                    cx.error(
                        &raw.referenced,
                        format!("{tpath}.enabled"),
                        "an https URL always uses TLS",
                    );
                    return None;
                }
                None => TlsOptions::default(),
            }
        }
    };
    let options = TlsOptions {
        alpn: alpn(http2),
        ..options
    };
    let anonymous = TlsOptions {
        client_cert: None,
        ..options.clone()
    };
    let own = crate::tls::config::client_target(cx, options, tls, at, &url.host, &tpath)?;
    if own.client.options.client_cert.is_none() {
        let shared = Arc::clone(&own.client);
        return Some((own, shared));
    }
    // Everything but the certificate was built once already, so this cannot fail anew.
    match TlsClient::build(anonymous, &mut |p| cx.read_file(p)) {
        Ok(client) => Some((own, Arc::new(client))),
        Err(e) => {
            cx.error(&at, tpath, e.message);
            None
        }
    }
}

/// The `headers` table, files read now: `None` after reporting errors.
fn headers(cx: &mut Context, http: &RawHttp, path: &str) -> Option<Vec<Header>> {
    let Some(headers) = &http.headers else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (name, raw) in &headers.value {
        let key = format!("{path}.headers.{name}");
        let header_name = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                cx.error(
                    &raw.referenced,
                    key,
                    format!("{name:?} is not a valid header name"),
                );
                ok = false;
                continue;
            }
        };
        if OWN_HEADERS.contains(&header_name.as_str()) {
            cx.error(
                &raw.referenced,
                key,
                format!("vantage sets {name} itself (one request per connection, then close)"),
            );
            ok = false;
            continue;
        }
        let (bytes, from_file) = match &raw.value {
            RawHeaderValue::Value(v) => (v.as_bytes().to_vec(), false),
            RawHeaderValue::File(f) => {
                let file = cx.relative(&f.file);
                match cx.read_file(&file) {
                    Ok(bytes) => (bytes, true),
                    Err(e) => {
                        cx.error(
                            &raw.referenced,
                            key,
                            format!("cannot read {}: {e}", file.display()),
                        );
                        ok = false;
                        continue;
                    }
                }
            }
        };
        // A file written by `echo` ends in a newline that is not part of the token.
        let end = bytes
            .iter()
            .rposition(|b| !matches!(b, b'\r' | b'\n'))
            .map_or(0, |i| i + 1);
        let value = match HeaderValue::from_bytes(&bytes[..end]) {
            Ok(v) if end > 0 || !from_file => v,
            _ => {
                // Never quote the value: it may be a secret.
                let what = if from_file {
                    "the file's content"
                } else {
                    "the value"
                };
                cx.error(
                    &raw.referenced,
                    key,
                    format!("{what} is not a valid header value (empty, or control characters)"),
                );
                ok = false;
                continue;
            }
        };
        if header_name == ::http::header::HOST
            && value
                .to_str()
                .map_or(true, |v| v.parse::<Authority>().is_err())
        {
            cx.error(
                &raw.referenced,
                key,
                "Host must be a host name with an optional port, such as api.example.com:8443",
            );
            ok = false;
            continue;
        }
        let secret = from_file || CREDENTIAL_HEADERS.contains(&header_name.as_str());
        let mut value = value;
        value.set_sensitive(secret);
        out.push(Header {
            name: header_name,
            value,
            secret,
        });
    }
    ok.then_some(out)
}

/// An HTTP method as written: methods are case-sensitive, and `get` is not `GET`.
fn method(text: &str) -> Result<Method, String> {
    let chars = text.chars().count();
    if chars > MAX_METHOD_CHARS {
        return Err(format!(
            "method is {chars} characters long; no method is longer than {MAX_METHOD_CHARS}"
        ));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "method {text:?} is not an upper-case method name such as GET, HEAD or POST"
        ));
    }
    Method::from_bytes(text.as_bytes()).map_err(|e| format!("method {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_accept_binary_units() {
        assert_eq!(ByteSize::parse("1MiB"), Ok(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("512 KiB"), Ok(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("100"), Ok(ByteSize(100)));
        assert!(ByteSize::parse("1MB").is_err());
        assert!(ByteSize::parse("lots").is_err());
    }
}
