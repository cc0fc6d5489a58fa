//! LDAP's BER: the requests we send, already encoded (StartTLS, WhoAmI, UnbindRequest), and the
//! parser of the ExtendedResponse that answers them.

use std::fmt;

/// LDAPMessage { messageID 1, ExtendedRequest { requestName 1.3.6.1.4.1.1466.20037 } }.
pub(super) const START_TLS: &[u8] = b"\x30\x1d\x02\x01\x01\x77\x18\x80\x161.3.6.1.4.1.1466.20037";

/// LDAPMessage { messageID 2, UnbindRequest }.
pub(super) const UNBIND: &[u8] = b"\x30\x05\x02\x01\x02\x42\x00";

/// LDAPMessage { messageID 2, ExtendedRequest { requestName 1.3.6.1.4.1.4203.1.11.3 } }.
pub(super) const WHO_AM_I: &[u8] = b"\x30\x1e\x02\x01\x02\x77\x19\x80\x171.3.6.1.4.1.4203.1.11.3";

/// LDAPMessage { messageID 3, UnbindRequest }.
pub(super) const UNBIND_AFTER_WHO_AM_I: &[u8] = b"\x30\x05\x02\x01\x03\x42\x00";

#[derive(Debug, PartialEq, Eq)]
pub(super) struct ExtendedResponse {
    pub message_id: u32,
    pub result_code: u32,
    pub diagnostic: String,
}

impl fmt::Display for ExtendedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "resultCode {}", self.result_code)?;
        if let Some(name) = result_name(self.result_code) {
            write!(f, " ({name})")?;
        }
        if !self.diagnostic.is_empty() {
            write!(f, ": {:?}", self.diagnostic)?;
        }
        Ok(())
    }
}

/// The names of the result codes a StartTLS answer is likely to carry (RFC 4511 4.1.9).
fn result_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => return None,
    })
}

/// One BER element: its tag, its content, and what follows it. Definite lengths only, as
/// LDAP requires (RFC 4511 5.1).
pub(super) fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (length, rest)
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

fn unsigned(content: &[u8]) -> Option<u32> {
    if content.is_empty() || content.len() > 4 {
        return None;
    }
    Some(content.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)))
}

/// The content of an LDAPMessage (after its SEQUENCE header) holding an ExtendedResponse.
/// On error, what is missing or wrong.
pub(super) fn parse_extended_response(message: &[u8]) -> Result<ExtendedResponse, &'static str> {
    let (tag, id, rest) = element(message).ok_or("no message ID")?;
    let message_id = match (tag, unsigned(id)) {
        (0x02, Some(id)) => id,
        _ => return Err("no message ID"),
    };
    let (tag, op, _) = element(rest).ok_or("no operation")?;
    if tag != 0x78 {
        return Err("the operation is not an ExtendedResponse");
    }
    let (tag, code, op) = element(op).ok_or("no result code")?;
    let result_code = match (tag, unsigned(code)) {
        (0x0a, Some(code)) => code,
        _ => return Err("no result code"),
    };
    match element(op) {
        Some((0x04, _matched_dn, op)) => match element(op) {
            Some((0x04, diagnostic, _)) => Ok(ExtendedResponse {
                message_id,
                result_code,
                diagnostic: String::from_utf8_lossy(diagnostic).into_owned(),
            }),
            _ => Err("no diagnostic message"),
        },
        _ => Err("no matched DN"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_tls_request_is_well_formed_ber() {
        let (tag, message, rest) = element(START_TLS).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let (tag, id, op) = element(message).unwrap();
        assert_eq!((tag, id), (0x02, &[1u8][..]));
        let (tag, request, rest) = element(op).unwrap();
        assert_eq!((tag, rest.len()), (0x77, 0));
        let (tag, name, rest) = element(request).unwrap();
        assert_eq!(
            (tag, name, rest.len()),
            (0x80, &b"1.3.6.1.4.1.1466.20037"[..], 0)
        );
    }

    #[test]
    fn the_who_am_i_request_is_well_formed_ber() {
        let (tag, message, rest) = element(WHO_AM_I).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let (tag, id, op) = element(message).unwrap();
        assert_eq!((tag, id), (0x02, &[2u8][..]));
        let (tag, request, _) = element(op).unwrap();
        assert_eq!(tag, 0x77);
        let (tag, name, rest) = element(request).unwrap();
        assert_eq!(
            (tag, name, rest.len()),
            (0x80, &b"1.3.6.1.4.1.4203.1.11.3"[..], 0)
        );
    }

    #[test]
    fn extended_responses_parse_with_short_and_long_lengths() {
        // messageID 1, ExtendedResponse { resultCode 52, matchedDN "", diagnosticMessage }.
        let diagnostic = b"Could not initialize TLS";
        let mut op = vec![0x0a, 0x01, 52, 0x04, 0x00, 0x04, diagnostic.len() as u8];
        op.extend_from_slice(diagnostic);
        let mut message = vec![0x02, 0x01, 0x01, 0x78, op.len() as u8];
        message.extend_from_slice(&op);
        let response = parse_extended_response(&message).unwrap();
        assert_eq!(
            response.to_string(),
            "resultCode 52 (unavailable): \"Could not initialize TLS\""
        );
        assert_eq!(response.message_id, 1);

        let mut long = vec![0x02, 0x01, 0x01, 0x78, 0x81, op.len() as u8];
        long.extend_from_slice(&op);
        assert_eq!(parse_extended_response(&long), Ok(response));
    }

    #[test]
    fn slapd_answers_as_captured_parse() {
        // Captured from slapd 2.5: StartTLS accepted, and refused by a server without TLS.
        let accepted = b"\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04\x00";
        let mut refused = b"\x30\x2a\x02\x01\x01\x78\x25\x0a\x01\x02\x04\x00\x04\x1e".to_vec();
        refused.extend_from_slice(b"unsupported extended operation");
        let content = |message: &[u8]| element(message).unwrap().1.to_vec();
        let ok = parse_extended_response(&content(accepted)).unwrap();
        assert_eq!((ok.message_id, ok.result_code), (1, 0));
        let no = parse_extended_response(&content(&refused)).unwrap();
        assert_eq!(
            no.to_string(),
            "resultCode 2 (protocolError): \"unsupported extended operation\""
        );
    }

    #[test]
    fn malformed_ldap_answers_are_errors_not_panics() {
        let cases: [&[u8]; 6] = [
            b"",
            b"\x02",
            b"\x02\x01",
            b"\x02\x01\x01\x61\x03\x0a\x01\x00",
            b"\x02\x01\x01\x78\x84\xff\xff\xff\xff",
            b"\x02\x01\x01\x78\x03\x0a\x01\x00",
        ];
        for case in cases {
            assert!(parse_extended_response(case).is_err(), "{case:02x?} parsed");
        }
    }
}
