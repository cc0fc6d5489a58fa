//! The benchmark's certificates, made at run time: an RSA-2048 chain and an ECDSA P-256 chain,
//! each a root and a leaf for one name, as a small real deployment would have.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

/// The name every leaf is issued for; probes send it as SNI and verify it.
pub const SERVER_NAME: &str = "bench.vantage.test";

/// The files of one chain.
pub struct Chain {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn rsa(dir: &Path) -> Chain {
    chain(dir, "rsa", &PKCS_RSA_SHA256)
}

pub fn ecdsa(dir: &Path) -> Chain {
    chain(dir, "ecdsa", &PKCS_ECDSA_P256_SHA256)
}

fn chain(dir: &Path, kind: &str, alg: &'static SignatureAlgorithm) -> Chain {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate_for(alg).expect("generating a CA key");
    let mut ca = CertificateParams::new(Vec::new()).expect("CA parameters");
    ca.distinguished_name
        .push(DnType::CommonName, format!("vantage bench {kind} root"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::days(1);
    ca.not_after = now + Duration::days(365);
    let ca_cert = ca.self_signed(&ca_key).expect("signing the CA");

    let key = KeyPair::generate_for(alg).expect("generating a leaf key");
    let mut leaf = CertificateParams::new(vec![SERVER_NAME.to_string()]).expect("leaf parameters");
    leaf.distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - Duration::days(1);
    leaf.not_after = now + Duration::days(90);
    let cert = leaf
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .expect("signing the leaf");

    let chain = Chain {
        ca: dir.join(format!("{kind}-ca.pem")),
        cert: dir.join(format!("{kind}-leaf.pem")),
        key: dir.join(format!("{kind}-leaf.key")),
    };
    fs::write(&chain.ca, ca_cert.pem()).expect("writing the CA");
    fs::write(&chain.cert, cert.pem()).expect("writing the leaf");
    fs::write(&chain.key, key.serialize_pem()).expect("writing the leaf key");
    chain
}
