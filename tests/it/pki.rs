//! Certificates made at test time with rcgen: roots, intermediates, and leaves with any validity
//! window, names and key type.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::support::TempDir;

/// `now + days` (negative for the past).
pub fn days(n: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::days(n)
}

/// A certificate authority: a root, or an intermediate issued by another CA.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub cert: Certificate,
}

impl Ca {
    pub fn root(common_name: &str) -> Ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params = ca_params(common_name, days(3650));
        let cert = params.self_signed(&key).unwrap();
        Ca { params, key, cert }
    }

    /// An intermediate CA issued by this one, valid until `not_after`.
    pub fn intermediate(&self, common_name: &str, not_after: OffsetDateTime) -> Ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params = ca_params(common_name, not_after);
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Ca { params, key, cert }
    }

    /// This CA's name and key in a certificate issued by `other`, valid until `not_after`: the
    /// cross-signature that servers send for old clients, and that newer ones never use.
    pub fn cross_signed_by(
        &self,
        other: &Ca,
        not_after: OffsetDateTime,
    ) -> CertificateDer<'static> {
        let mut params = self.params.clone();
        params.not_after = not_after;
        params
            .signed_by(&self.key, &other.issuer())
            .unwrap()
            .der()
            .clone()
    }

    pub fn leaf(&self, spec: Leaf) -> Issued {
        let (params, key) = spec.params();
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Issued { cert, key }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

fn ca_params(common_name: &str, not_after: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = days(-30);
    params.not_after = not_after;
    params
}

/// What a leaf certificate should look like.
pub struct Leaf {
    pub names: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub rsa: bool,
    pub client: bool,
}

impl Leaf {
    /// A server certificate for `names`, valid from a day ago for 90 days, ECDSA P-256.
    pub fn server(names: &[&str]) -> Leaf {
        Leaf {
            names: names.iter().map(|n| n.to_string()).collect(),
            not_before: days(-1),
            not_after: days(90),
            rsa: false,
            client: false,
        }
    }

    pub fn valid(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Leaf {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    pub fn rsa(mut self) -> Leaf {
        self.rsa = true;
        self
    }

    pub fn client(mut self) -> Leaf {
        self.client = true;
        self
    }

    fn params(&self) -> (CertificateParams, KeyPair) {
        let alg = if self.rsa {
            &PKCS_RSA_SHA256
        } else {
            &PKCS_ECDSA_P256_SHA256
        };
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(self.names.clone()).unwrap();
        let cn = self.names.first().map_or("vantage test", |n| n.as_str());
        params.distinguished_name.push(DnType::CommonName, cn);
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.extended_key_usages = vec![if self.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        (params, key)
    }

    /// A certificate that signs itself (not a CA): what a quick `rcgen` or appliance makes.
    pub fn self_signed(self) -> Issued {
        let (params, key) = self.params();
        let cert = params.self_signed(&key).unwrap();
        Issued { cert, key }
    }
}

/// A leaf certificate and its key.
pub struct Issued {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl Issued {
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// Writes `NAME.pem` and `NAME.key` into `dir`; returns both paths.
    pub fn write(&self, dir: &TempDir, name: &str) -> (String, String) {
        let cert = dir.write(&format!("{name}.pem"), &self.cert.pem());
        let key = dir.write(&format!("{name}.key"), &self.key.serialize_pem());
        (cert.display().to_string(), key.display().to_string())
    }
}

/// A root CA written to `root.pem` in a folder of its own, and the `tls` tables that trust it
/// for `vantage.test`.
pub struct Pki {
    pub dir: TempDir,
    pub root: Ca,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = TempDir::new(tag);
        let root = Ca::root(&format!("vantage {tag} root"));
        dir.write("root.pem", &root.cert.pem());
        Pki { dir, root }
    }

    /// The `tls` table in block style, plus `extra` lines (indented for a target's keys).
    pub fn yaml(&self, extra: &str) -> String {
        format!(
            "    tls:\n      ca_file: {}\n      server_name: vantage.test\n{extra}",
            self.dir.0.join("root.pem").display()
        )
    }

    /// The `tls` table on one line, `extra` being more `, key: value` pairs.
    pub fn flow(&self, extra: &str) -> String {
        format!(
            "    tls: {{ca_file: {}, server_name: vantage.test{extra}}}\n",
            self.dir.0.join("root.pem").display()
        )
    }
}
