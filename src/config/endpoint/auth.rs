//! The `Authorization` header sent to a server, from `basic_auth` or `authorization`, with its
//! secret given inline or in a file.

use http::header::{self, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::build::{Context, Location, S};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: S<String>,
    pub password: Option<S<String>>,
    pub password_file: Option<S<String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthorization {
    #[serde(rename = "type")]
    pub scheme: Option<S<String>>,
    pub credentials: Option<S<String>>,
    pub credentials_file: Option<S<String>>,
}

/// The `Authorization` header from `basic_auth` or `authorization`: `Some(None)` when neither
/// is set, `None` after reporting errors.
pub(super) fn authorization(
    cx: &mut Context,
    basic_auth: Option<&S<RawBasicAuth>>,
    authorization: Option<&S<RawAuthorization>>,
    path: &str,
    entry: Location,
) -> Option<Option<(HeaderName, HeaderValue)>> {
    let value = match (basic_auth, authorization) {
        (None, None) => return Some(None),
        (Some(_), Some(a)) => {
            cx.error(
                &a.referenced,
                format!("{path}.authorization"),
                "basic_auth and authorization are two ways to send the Authorization header: set one",
            );
            return None;
        }
        (Some(basic), None) => {
            let key = format!("{path}.basic_auth");
            let b = &basic.value;
            if b.username.value.contains(':') {
                cx.error(
                    &b.username.referenced,
                    format!("{key}.username"),
                    "cannot contain ':', which ends the username in basic auth",
                );
                return None;
            }
            let password = secret(
                cx,
                (b.password.as_ref(), b.password_file.as_ref()),
                (&key, "password"),
                basic.referenced,
            )?;
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", b.username.value));
            format!("Basic {encoded}")
        }
        (None, Some(auth)) => {
            let key = format!("{path}.authorization");
            let a = &auth.value;
            let scheme = a.scheme.as_ref().map_or("Bearer", |s| s.value.as_str());
            if scheme.eq_ignore_ascii_case("basic") {
                cx.error(
                    &a.scheme.as_ref().map_or(auth.referenced, |s| s.referenced),
                    format!("{key}.type"),
                    "for Basic, use basic_auth",
                );
                return None;
            }
            if scheme.is_empty()
                || !scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                cx.error(
                    &a.scheme.as_ref().map_or(auth.referenced, |s| s.referenced),
                    format!("{key}.type"),
                    "must be one word, as Bearer",
                );
                return None;
            }
            let credentials = secret(
                cx,
                (a.credentials.as_ref(), a.credentials_file.as_ref()),
                (&key, "credentials"),
                auth.referenced,
            )?;
            format!("{scheme} {credentials}")
        }
    };
    match HeaderValue::try_from(value) {
        Ok(mut v) => {
            v.set_sensitive(true);
            Some(Some((header::AUTHORIZATION, v)))
        }
        Err(_) => {
            let at = basic_auth
                .map(|b| b.referenced)
                .or(authorization.map(|a| a.referenced))
                .unwrap_or(entry);
            cx.error(
                &at,
                format!("{path}.authorization"),
                "the credentials hold characters that an HTTP header cannot carry",
            );
            None
        }
    }
}

/// A secret given inline (`KEY`) or in a file (`KEY_file`), exactly one of them. A file's
/// trailing line break is not part of the secret.
fn secret(
    cx: &mut Context,
    (inline, file): (Option<&S<String>>, Option<&S<String>>),
    (table, key): (&str, &str),
    at: Location,
) -> Option<String> {
    match (inline, file) {
        (Some(v), None) => Some(v.value.clone()),
        (None, Some(f)) => {
            let path = cx.relative(&f.value);
            match cx.read_file(&path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) if text.trim().is_empty() => {
                        // An unpopulated Secret: every send would be refused, counted failed.
                        cx.error(
                            &f.referenced,
                            format!("{table}.{key}_file"),
                            format!("{} is empty", path.display()),
                        );
                        None
                    }
                    Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_string()),
                    Err(_) => {
                        cx.error(
                            &f.referenced,
                            format!("{table}.{key}_file"),
                            format!("{}: is not UTF-8 text", path.display()),
                        );
                        None
                    }
                },
                Err(e) => {
                    cx.error(
                        &f.referenced,
                        format!("{table}.{key}_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
        (Some(_), Some(f)) => {
            cx.error(
                &f.referenced,
                format!("{table}.{key}_file"),
                format!("set {key} or {key}_file, not both"),
            );
            None
        }
        (None, None) => {
            cx.error(
                &at,
                format!("{table}.{key}"),
                format!("missing: set {key} or {key}_file"),
            );
            None
        }
    }
}
