//! The OS keyring as a password source: the freedesktop Secret Service over D-Bus (GNOME Keyring,
//! KWallet, KeePassXC), built only with the `keyring` cargo feature since it links libdbus.
//!
//! An entry is the item whose attributes are `service = mailferry` and `username = ENTRY`, so
//! `secret-tool store --label=mailferry service mailferry username ENTRY` stores one as well.

use std::fmt;

/// The `service` attribute of every mailferry entry.
pub const SERVICE: &str = "mailferry";

/// Why the keyring gave no password.
#[derive(Debug)]
pub enum KeyringError {
    /// The keyring holds no entry under this name.
    NoEntry,
    /// This mailferry was built without the `keyring` feature.
    NotBuilt,
    /// The keyring could not be reached or refused (no D-Bus session, locked, not UTF-8).
    Unavailable(String),
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::NoEntry => f.write_str("the keyring holds no such entry"),
            KeyringError::NotBuilt => f.write_str(
                "this mailferry was built without the keyring feature \
                 (cargo install mailferry --features keyring; it needs libdbus-1-dev), \
                 or use password_command = \"secret-tool lookup service mailferry username ...\"",
            ),
            KeyringError::Unavailable(why) => write!(f, "the keyring cannot be used: {why}"),
        }
    }
}

#[cfg(feature = "keyring")]
mod secret_service {
    use super::{KeyringError, SERVICE};
    use dbus_secret_service_keyring_store::Store;
    use keyring_core::api::CredentialStoreApi;
    use keyring_core::{Entry, Error};

    fn entry(name: &str) -> Result<Entry, KeyringError> {
        Store::new()
            .and_then(|store| store.build(SERVICE, name, None))
            .map_err(classify)
    }

    fn classify(e: Error) -> KeyringError {
        match e {
            Error::NoEntry => KeyringError::NoEntry,
            Error::BadEncoding(_) => KeyringError::Unavailable("the secret is not UTF-8".into()),
            other => KeyringError::Unavailable(other.to_string()),
        }
    }

    /// The password stored under `name`.
    pub fn get(name: &str) -> Result<String, KeyringError> {
        entry(name)?.get_password().map_err(classify)
    }

    /// Stores (or replaces) the password under `name`.
    pub fn set(name: &str, password: &str) -> Result<(), KeyringError> {
        entry(name)?.set_password(password).map_err(classify)
    }

    /// Removes the entry `name`.
    pub fn delete(name: &str) -> Result<(), KeyringError> {
        entry(name)?.delete_credential().map_err(classify)
    }
}

#[cfg(feature = "keyring")]
pub use secret_service::{delete, get, set};

#[cfg(not(feature = "keyring"))]
mod absent {
    use super::KeyringError;

    /// Without the feature every use of the keyring says how to get it.
    pub fn get(_: &str) -> Result<String, KeyringError> {
        Err(KeyringError::NotBuilt)
    }

    /// Without the feature every use of the keyring says how to get it.
    pub fn set(_: &str, _: &str) -> Result<(), KeyringError> {
        Err(KeyringError::NotBuilt)
    }

    /// Without the feature every use of the keyring says how to get it.
    pub fn delete(_: &str) -> Result<(), KeyringError> {
        Err(KeyringError::NotBuilt)
    }
}

#[cfg(not(feature = "keyring"))]
pub use absent::{delete, get, set};

#[cfg(all(test, not(feature = "keyring")))]
mod tests {
    #[test]
    fn without_the_feature_every_use_says_how_to_get_it() {
        for e in [
            super::get("me").unwrap_err(),
            super::set("me", "pw").unwrap_err(),
            super::delete("me").unwrap_err(),
        ] {
            let e = e.to_string();
            assert!(
                e.contains("--features keyring") && e.contains("secret-tool lookup"),
                "{e}"
            );
        }
    }
}
