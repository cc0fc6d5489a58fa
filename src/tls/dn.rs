//! Distinguished names as Go's `crypto/x509` prints them (`pkix.Name.String`), the spelling
//! blackbox_exporter's `probe_ssl_last_chain_info` carries, so that a `/probe` answer's labels
//! are the ones its users' queries already match.
//!
//! Go reorders: the attributes it knows come most specific first (serial number, CN, OU, O,
//! postal code, street, locality, province, country), the values of one attribute joined by
//! `+`; attributes it does not know come last, as `OID=#` and their DER in hex. Values are
//! escaped as RFC 2253 says.

use std::fmt::Write as _;

use x509_parser::der_parser::asn1_rs::ToDer;
use x509_parser::x509::X509Name;

/// Go's short names, in the order its string puts them.
const KNOWN: [(&str, &str); 9] = [
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.3", "CN"),
    ("2.5.4.11", "OU"),
    ("2.5.4.10", "O"),
    ("2.5.4.17", "POSTALCODE"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.6", "C"),
];

/// `name` as Go prints it.
pub fn go_string(name: &X509Name<'_>) -> String {
    let attributes: Vec<(String, Option<&str>, Vec<u8>)> = name
        .iter_attributes()
        .map(|a| {
            let der = a.attr_value().to_der_vec().unwrap_or_default();
            (a.attr_type().to_id_string(), a.as_str().ok(), der)
        })
        .collect();
    let mut parts = Vec::new();
    for (oid, short) in KNOWN {
        let values: Vec<&str> = attributes
            .iter()
            .filter(|(o, ..)| o == oid)
            .filter_map(|(_, text, _)| *text)
            .collect();
        // Go keeps one serial number and one common name: the last it reads.
        let values = match short {
            "SERIALNUMBER" | "CN" => values.last().map(|v| vec![*v]).unwrap_or_default(),
            _ => values,
        };
        if !values.is_empty() {
            let joined: Vec<String> = values
                .iter()
                .map(|v| format!("{short}={}", escape(v)))
                .collect();
            parts.push(joined.join("+"));
        }
    }
    for (oid, _, der) in attributes.iter().rev() {
        if KNOWN.iter().all(|(known, _)| known != oid) {
            let mut hex = String::with_capacity(der.len() * 2);
            for b in der {
                let _ = write!(hex, "{b:02x}");
            }
            parts.push(format!("{oid}=#{hex}"));
        }
    }
    parts.join(",")
}

/// RFC 2253's escaping of an attribute value, as Go applies it.
fn escape(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn subject_of(params: rcgen::CertificateParams) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (_, parsed) = X509Certificate::from_der(cert.der()).unwrap();
        go_string(parsed.subject())
    }

    #[test]
    fn the_most_specific_attribute_comes_first_as_in_go() {
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        dn.push(rcgen::DnType::CommonName, "www.example.test");
        params.distinguished_name = dn;
        assert_eq!(
            subject_of(params),
            "CN=www.example.test,O=Example\\, Inc.,C=DE"
        );
    }

    #[test]
    fn values_are_escaped_as_rfc_2253_says() {
        assert_eq!(escape("a+b"), "a\\+b");
        assert_eq!(escape("#x "), "\\#x\\ ");
        assert_eq!(escape(" x"), "\\ x");
        assert_eq!(escape("plain"), "plain");
    }
}
