//! The URLs an HTTP probe requests: parsed once at load, and resolved against each other when a
//! redirect's `Location` is relative (RFC 3986 §5.2).

use std::fmt;
use std::net::IpAddr;

use http::uri::PathAndQuery;

use crate::net::Host;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where user info could start in `text`: after a leading scheme (`http:`, and `//` when it
/// follows), else at the start. Only a leading run of scheme characters is a scheme: a `://`
/// further on (in a query, say) may follow the user info, which must not show either.
pub(super) fn user_info_start(text: &str) -> usize {
    match text.split_once(':') {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            let slashes = if rest.starts_with("//") { 2 } else { 0 };
            scheme.len() + 1 + slashes
        }
        _ => 0,
    }
}

/// `text` with everything between its scheme and its last `@` replaced by `xxxxx`.
fn without_user_info(text: &str) -> String {
    let start = user_info_start(text);
    match text.rfind('@') {
        Some(at) if at >= start => format!("{}xxxxx{}", &text[..start], &text[at..]),
        _ => text.to_string(),
    }
}

/// An absolute http or https URL, without user info or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    pub host: Host,
    pub port: u16,
    /// The path and query as sent in the request line; at least `/`.
    pub path_and_query: PathAndQuery,
}

impl Url {
    /// Parses `text`. A text with an `@` that is refused may carry a password (`user:pw@`, even
    /// malformed), so its refusal never quotes it, nor any part of it: it shows the text with
    /// everything between the scheme and the last `@` replaced.
    pub fn parse(text: &str) -> Result<Url, String> {
        Url::parse_unguarded(text).map_err(|e| {
            if text.contains('@') {
                format!(
                    "{:?} is not a URL vantage takes: it carries user info (or an @ where a host \
                     should be); send credentials in an Authorization header (http.headers, \
                     from a file) instead",
                    without_user_info(text)
                )
            } else {
                e
            }
        })
    }

    fn parse_unguarded(text: &str) -> Result<Url, String> {
        let (scheme_text, rest) = text.split_once("://").ok_or_else(|| {
            format!("{text:?} is not a URL: write http://HOST/PATH or https://...")
        })?;
        let scheme = match scheme_text.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("scheme {other:?} is not http or https")),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err("user info".into());
        }
        let (host, port) =
            split_authority(authority, scheme).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(Url {
            scheme,
            host,
            port,
            path_and_query: path_and_query(tail).map_err(|e| format!("{text:?}: {e}"))?,
        })
    }

    /// `host[:port]` as the Host header and HTTP/2 `:authority` carry it: the port only when it
    /// is not the scheme's default, IPv6 literals in brackets.
    pub fn authority(&self) -> String {
        let host = match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            other => other.to_string(),
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Whether `other` names the same host (DNS names compare without case or final dot).
    pub fn same_host(&self, other: &Url) -> bool {
        match (&self.host, &other.host) {
            (Host::Name(a), Host::Name(b)) => a
                .trim_end_matches('.')
                .eq_ignore_ascii_case(b.trim_end_matches('.')),
            (a, b) => a == b,
        }
    }

    /// Whether `other` is the same server (scheme, host, port): credentials go nowhere else.
    pub fn same_origin(&self, other: &Url) -> bool {
        self.scheme == other.scheme && self.same_host(other) && self.port == other.port
    }

    /// Resolves a `Location` value against this URL.
    pub fn join(&self, reference: &str) -> Result<Url, String> {
        let reference = reference.trim();
        let reference = reference.split('#').next().unwrap_or_default();
        if let Some((scheme, _)) = reference.split_once(':')
            && !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Url::parse(reference);
        }
        if let Some(network_path) = reference.strip_prefix("//") {
            return Url::parse(&format!("{}://{network_path}", self.scheme.as_str()));
        }
        let (path, query) = match reference.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (reference, None),
        };
        let base_path = self.path_and_query.path();
        let merged = if path.is_empty() {
            base_path.to_string()
        } else if path.starts_with('/') {
            remove_dot_segments(path)
        } else {
            let folder = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
            remove_dot_segments(&format!("{folder}{path}"))
        };
        let query = match (path.is_empty(), query) {
            (_, Some(q)) => Some(q),
            (true, None) => self.path_and_query.query(),
            (false, None) => None,
        };
        let tail = match query {
            Some(q) => format!("{merged}?{q}"),
            None => merged,
        };
        Ok(Url {
            path_and_query: path_and_query(&encode_lenient(&tail))?,
            ..self.clone()
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path_and_query
        )
    }
}

fn split_authority(authority: &str, scheme: Scheme) -> Result<(Host, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ]")?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or("expected :PORT after the IPv6 address")?,
            ),
        };
        (format!("[{ip}]"), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        None | Some("") => scheme.default_port(),
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))?,
    };
    if host.is_empty() {
        return Err("the URL has no host".to_string());
    }
    Ok((Host::parse(&host)?, port))
}

fn path_and_query(tail: &str) -> Result<PathAndQuery, String> {
    let tail = tail.split('#').next().unwrap_or_default();
    let tail = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    tail.parse::<PathAndQuery>().map_err(|_| {
        format!("{tail:?} is not a valid path: percent-encode spaces and other special characters")
    })
}

/// Percent-encodes what a request line cannot carry as is (spaces, non-ASCII, a few
/// delimiters), as browsers do with a sloppy `Location`: a server that sends one still works.
fn encode_lenient(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// RFC 3986 §5.2.4: `.` and `..` segments removed, never climbing above the root.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn user_info_is_refused_without_showing_any_of_it() {
        for (text, shown) in [
            (
                "https://user:hunter2@example.com:8443/x?y",
                "https://xxxxx@example.com:8443/x?y",
            ),
            ("http://ghp_token@example.com/", "http://xxxxx@example.com/"),
            // Malformed: a `/` in the password, a missing `/`: the password is still hidden.
            (
                "http://admin:hunt/er2@example.com/",
                "http://xxxxx@example.com/",
            ),
            ("http:/admin:sekrit@example.com/", "http:xxxxx@example.com/"),
            // Regression (found by the location fuzz target): a `://` after the user info, in
            // a query, was taken for the scheme's, and the whole text was shown.
            (
                "https//admin:sekrit@example.com/?next=https://example.org/",
                "xxxxx@example.com/?next=https://example.org/",
            ),
        ] {
            let e = Url::parse(text).unwrap_err();
            assert!(e.starts_with(&format!("{shown:?} is not a URL")), "{e}");
            for secret in ["hunter2", "ghp_token", "hunt", "er2", "sekrit"] {
                assert!(!e.contains(secret), "{e}");
            }
        }
        assert!(
            Url::parse("http://example.com/@me").is_ok(),
            "an @ in the path"
        );
    }
    #[test]
    fn parses_scheme_host_port_and_path() {
        let u = url("https://Example.com:8443/a/b?x=1#frag");
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.host, Host::Name("Example.com".into()));
        assert_eq!(u.port, 8443);
        assert_eq!(u.path_and_query.as_str(), "/a/b?x=1");
        assert_eq!(u.authority(), "Example.com:8443");

        let u = url("http://127.0.0.1");
        assert_eq!((u.port, u.path_and_query.as_str()), (80, "/"));
        assert_eq!(u.authority(), "127.0.0.1");

        let u = url("https://[::1]:443?q");
        assert_eq!(u.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(u.path_and_query.as_str(), "/?q");
        assert_eq!(u.authority(), "[::1]");
        assert_eq!(url("http://[::1]:8080/").authority(), "[::1]:8080");
    }

    #[test]
    fn refuses_what_cannot_be_probed() {
        for (bad, hint) in [
            ("example.com/health", "not a URL"),
            ("ftp://example.com/", "not http or https"),
            ("https://user:pw@example.com/", "Authorization"),
            ("https://example.com:0/", "port"),
            ("https://example.com:https/", "port"),
            ("https:///path", "no host"),
            ("https://[::1/", "closing ]"),
            (
                "http://exa mple.com/",
                "neither an IP address nor a DNS name",
            ),
            ("http://example.com/a b", "percent-encode"),
        ] {
            let err = Url::parse(bad).unwrap_err();
            assert!(err.contains(hint), "{bad}: {err}");
        }
    }

    #[test]
    fn joins_references_as_rfc_3986_does() {
        let base = url("http://a/b/c/d;p?q");
        for (reference, expected) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("g/../h", "http://a/b/c/h"),
            ("https://other:8443/x", "https://other:8443/x"),
            ("/a b/ü?q=x y", "http://a/a%20b/%C3%BC?q=x%20y"),
            ("/already%20encoded", "http://a/already%20encoded"),
        ] {
            assert_eq!(
                base.join(reference).unwrap().to_string(),
                expected,
                "{reference:?}"
            );
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let a = url("https://api.example.com/x");
        assert!(a.same_origin(&url("https://API.example.com./y")));
        assert!(!a.same_origin(&url("http://api.example.com/x")));
        assert!(!a.same_origin(&url("https://api.example.com:8443/x")));
        assert!(!a.same_origin(&url("https://evil.example.com/x")));
    }
}
