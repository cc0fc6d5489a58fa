//! The key exchange a client offers (`tls.key_exchange`): which group its ClientHello carries a
//! key share for, the order in which it lists the others, and the name of the group a server
//! chose, as the facts, the report and the metrics spell it.
//!
//! The order is written out here rather than taken from rustls: rustls' own default depends on
//! its `prefer-post-quantum` feature, which any crate in the build could switch on, and a
//! dependency update must not change what every target sends.

use std::sync::{Arc, OnceLock};

use rustls::NamedGroup;
use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1, SECP384R1, X25519, X25519MLKEM768};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use serde::{Deserialize, Serialize};

use super::roots::provider;

/// What a client's first ClientHello offers. Both list the same four groups, so a server that
/// takes only one of them still completes the handshake: when it wants a group the client sent
/// no share for, it asks for one with a HelloRetryRequest, at the cost of one more round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyExchange {
    /// One X25519 share, then secp256r1, secp384r1 and X25519MLKEM768 listed: the cheapest
    /// ClientHello for the many servers that pick X25519 (the README says why it is the
    /// default).
    #[default]
    Classic,
    /// An X25519MLKEM768 share and, sent apart too, the X25519 half of it (no key more), then
    /// secp256r1 and secp384r1 listed: what current browsers send.
    PostQuantum,
}

impl KeyExchange {
    /// The groups in the order the ClientHello lists them; rustls makes a key share for the
    /// first one only (and, for a hybrid, for its classical part when that is listed too).
    fn groups(self) -> [&'static dyn SupportedKxGroup; 4] {
        match self {
            KeyExchange::Classic => [X25519, SECP256R1, SECP384R1, X25519MLKEM768],
            KeyExchange::PostQuantum => [X25519MLKEM768, X25519, SECP256R1, SECP384R1],
        }
    }
}

/// The crypto provider for a client that offers `choice`: the one provider (see `roots`) with
/// its groups in the choice's order. Built once per process and choice, with the config. No
/// warm-up of its own: `provider()` has already done the one-time work of these very groups
/// (a test holds the two sets equal), before any handshake timer runs.
pub fn client_provider(choice: KeyExchange) -> Arc<CryptoProvider> {
    static CLASSIC: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static POST_QUANTUM: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    let cell = match choice {
        KeyExchange::Classic => &CLASSIC,
        KeyExchange::PostQuantum => &POST_QUANTUM,
    };
    Arc::clone(cell.get_or_init(|| {
        Arc::new(CryptoProvider {
            kx_groups: choice.groups().to_vec(),
            ..(*provider()).clone()
        })
    }))
}

/// A group by the name rustls and openssl print (`X25519`, `secp256r1`, `X25519MLKEM768`); a
/// group rustls has no name for (none that vantage offers) by its number.
pub fn group_name(group: NamedGroup) -> String {
    match group.as_str() {
        Some(name) => name.to_string(),
        None => format!("0x{:04x}", u16::from(group)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(choice: KeyExchange) -> Vec<String> {
        client_provider(choice)
            .kx_groups
            .iter()
            .map(|g| group_name(g.name()))
            .collect()
    }

    #[test]
    fn classic_leads_with_x25519_and_still_lists_the_hybrid() {
        assert_eq!(
            names(KeyExchange::Classic),
            ["X25519", "secp256r1", "secp384r1", "X25519MLKEM768"]
        );
    }

    #[test]
    fn post_quantum_leads_with_the_hybrid_and_lists_the_rest() {
        assert_eq!(
            names(KeyExchange::PostQuantum),
            ["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"]
        );
    }

    /// Only the order changes: the groups are the one provider's, which it warmed up, and so
    /// are the suites.
    #[test]
    fn a_choice_changes_nothing_but_the_groups() {
        let base = provider();
        for choice in [KeyExchange::Classic, KeyExchange::PostQuantum] {
            let p = client_provider(choice);
            assert!(Arc::ptr_eq(&p, &client_provider(choice)), "built once");
            assert_eq!(p.cipher_suites, base.cipher_suites);
            let mut ours: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
            let mut theirs: Vec<_> = base.kx_groups.iter().map(|g| g.name()).collect();
            ours.sort_by_key(|g| u16::from(*g));
            theirs.sort_by_key(|g| u16::from(*g));
            assert_eq!(ours, theirs, "{choice:?} offers the one provider's groups");
        }
    }

    #[test]
    fn unnamed_groups_are_numbered() {
        assert_eq!(group_name(NamedGroup::Unknown(0x1234)), "0x1234");
        assert_eq!(group_name(NamedGroup::X25519MLKEM768), "X25519MLKEM768");
    }
}
