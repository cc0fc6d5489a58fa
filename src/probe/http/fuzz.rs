//! The `location` fuzz target: URLs as configs write them, and `Location` values as servers
//! send them, through what a redirect does with them: the join, the origin checks that keep
//! credentials at home, the next request's method, and the request message itself.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method};

use super::url::{Scheme, Url, user_info_start};
use super::{Header, HttpProbe, Request, StatusCodes, redirected};
use crate::net::IpVersion;
use crate::tls::fuzz::client;

/// The base of a `Location` when the input names none.
const BASE: &str = "https://vantage.example:8443/a/b/c?q=1";

/// A probe with a secret header: [`HttpProbe::message`] reads only its headers.
static PROBE: LazyLock<HttpProbe> = LazyLock::new(|| {
    let url = Url::parse(BASE).expect("a valid URL");
    HttpProbe {
        tls: client().target(&url.host).expect("a valid server name"),
        tls_elsewhere: Arc::clone(&client()),
        written: BASE.to_string(),
        url,
        method: Method::POST,
        headers: vec![Header {
            name: AUTHORIZATION,
            value: HeaderValue::from_static("Bearer fuzz"),
            secret: true,
        }],
        body: Bytes::from_static(b"{}"),
        valid_status_codes: vec![StatusCodes::parse("200-299").expect("a status range")],
        body_regex: None,
        body_not_regex: None,
        body_size_limit: 1 << 20,
        follow_redirects: true,
        ip_version: IpVersion::Auto,
        resolver: None,
        pinned: None,
    }
});

/// A URL as vantage prints it parses back to itself, and its authority names the same server.
fn round_trips(url: &Url) {
    assert_eq!(Url::parse(&url.to_string()).as_ref(), Ok(url), "{url}");
    let origin = Url::parse(&format!("{}://{}", url.scheme.as_str(), url.authority()))
        .expect("an authority parses");
    assert!(origin.same_origin(url), "{url}");
    assert!(url.path_and_query.as_str().starts_with('/'), "{url}");
}

/// A refused URL with an `@` shows none of what may be user info (all before the last `@`,
/// after the scheme): the refusal of the same URL with other user info reads the same.
fn never_shows_user_info(text: &str, refusal: &str) {
    let Some(at) = text.rfind('@') else {
        return;
    };
    let start = user_info_start(text);
    // Without `:` or `@`, the other user info moves neither the scheme's end nor the last `@`.
    let other = format!("{}OTHER/user/info{}", &text[..start], &text[at..]);
    if let Err(other_refusal) = Url::parse(&other) {
        assert_eq!(refusal, other_refusal);
    }
}

/// One input: a URL, a line break, and a `Location` value; without a line break, the whole
/// input is the `Location`, against a fixed base.
pub fn location(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (base, location) = match text.split_once('\n') {
        Some((base, location)) => (base, location),
        None => (BASE, &*text),
    };
    let base = match Url::parse(base) {
        Ok(url) => {
            round_trips(&url);
            url
        }
        Err(e) => {
            never_shows_user_info(base, &e);
            PROBE.url.clone()
        }
    };
    let Ok(next) = base.join(location) else {
        return;
    };
    round_trips(&next);
    // A reference without a scheme or host stays on the server that sent it.
    let trimmed = location.trim();
    let names_a_server = trimmed.starts_with("//")
        || trimmed
            .split_once(':')
            .is_some_and(|(scheme, _)| !scheme.contains(['/', '?', '#']));
    if !names_a_server {
        assert!(base.same_origin(&next), "{base} + {location:?} = {next}");
    }
    for status in [301, 302, 303, 307, 308] {
        let request = Request {
            url: base.clone(),
            method: PROBE.method.clone(),
            body: PROBE.body.clone(),
            credentials: true,
            body_dropped: false,
        };
        let request = redirected(request, next.clone(), status);
        assert_eq!(request.credentials, base.same_origin(&next));
        for h2 in [false, true] {
            // Every part of a URL that parsed is valid in a request: failing here is a bug.
            let message = PROBE.message(&request, h2).expect("a request message");
            let secret = message.headers().contains_key(AUTHORIZATION);
            assert_eq!(secret, request.credentials);
        }
    }
    if next.scheme == Scheme::Https && !next.same_host(&PROBE.url) {
        let _ = PROBE.tls_elsewhere.target_by_host(&next.host);
    }
}
