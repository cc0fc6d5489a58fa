//! What an answer's head says about its body and its resource: the declared length and the
//! `Last-Modified` time, as blackbox_exporter reads them, so that both report the same.

use std::time::UNIX_EPOCH;

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, LAST_MODIFIED};

/// The body length the answer declares in `Content-Length`; `None` when it declares none (a
/// chunked or close-delimited body) or one that is not a number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `Last-Modified` as Unix seconds, in any of the three date formats HTTP allows (IMF-fixdate,
/// RFC 850, asctime); `None` when absent or unreadable, as a client would ignore it.
pub fn last_modified(headers: &HeaderMap) -> Option<i64> {
    let text = headers.get(LAST_MODIFIED)?.to_str().ok()?;
    let at = httpdate::parse_http_date(text.trim()).ok()?;
    let seconds = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok()?,
        Err(before) => -i64::try_from(before.duration().as_secs()).ok()?,
    };
    Some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: http::HeaderName, value: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_static(value));
        map
    }

    #[test]
    fn the_declared_length_is_read_and_nonsense_is_none() {
        assert_eq!(content_length(&headers(CONTENT_LENGTH, "1234")), Some(1234));
        assert_eq!(content_length(&headers(CONTENT_LENGTH, "12x")), None);
        assert_eq!(content_length(&HeaderMap::new()), None);
    }

    #[test]
    fn last_modified_in_each_http_date_format() {
        let expected = Some(784_111_777);
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                last_modified(&headers(LAST_MODIFIED, date)),
                expected,
                "{date}"
            );
        }
        assert_eq!(last_modified(&headers(LAST_MODIFIED, "yesterday")), None);
        assert_eq!(last_modified(&HeaderMap::new()), None);
    }
}
