//! Secrets sealed at rest. With a master key installed (HOOKLINE_MASTER_KEY),
//! signing secrets and auth header values are written to the config stream
//! as `sealed:v1:<key id>:<base64(nonce ‖ ChaCha20-Poly1305 ciphertext)>`
//! and opened when read. Former keys stay in the keyring to open older
//! events; `hookline admin reseal` rewrites every current secret under the
//! newest key. Without a key, secrets are stored in clear (development).

use std::sync::OnceLock;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use chacha20poly1305::{
    ChaCha20Poly1305, Key, Nonce,
    aead::{Aead, KeyInit},
};

const PREFIX: &str = "sealed:v1:";

struct SealKey {
    id: String,
    cipher: ChaCha20Poly1305,
}

/// The current key first, then former ones.
pub struct Keyring(Vec<SealKey>);

impl Keyring {
    /// Parse base64 keys of 32 bytes; `setting` names the source in errors.
    pub fn parse(current: &str, previous: &[&str], setting: &'static str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (i, text) in std::iter::once(current).chain(previous.iter().copied()).enumerate() {
            let key = i + 1;
            let bytes = B64.decode(text.trim()).map_err(|source| KeyError::NotBase64 { setting, key, source })?;
            if bytes.len() != 32 {
                return Err(KeyError::Length { setting, key });
            }
            let id = crate::signing::sha256_hex(&bytes)[..8].to_owned();
            keys.push(SealKey { id, cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)) });
        }
        Ok(Self(keys))
    }
}

/// Why a master key is refused; `key` counts from 1, the current key first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{setting}: key {key} is not base64")]
    NotBase64 {
        setting: &'static str,
        key: usize,
        #[source]
        source: base64::DecodeError,
    },
    #[error("{setting}: key {key} must be 32 bytes (base64 of `head -c32 /dev/urandom`)")]
    Length { setting: &'static str, key: usize },
}

static KEYRING: OnceLock<Keyring> = OnceLock::new();

/// Install the process's keyring once, at start-up.
pub fn install(keyring: Keyring) {
    let _ = KEYRING.set(keyring);
}

pub fn enabled() -> bool {
    KEYRING.get().is_some()
}

/// Seal `plain` with the current key (clear text when no key is installed).
pub fn seal(plain: &str) -> String {
    let Some(ring) = KEYRING.get() else { return plain.to_owned() };
    let key = &ring.0[0];
    let nonce: [u8; 12] = rand::random();
    let ct = key.cipher.encrypt(Nonce::from_slice(&nonce), plain.as_bytes()).expect("sealing cannot fail");
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&ct);
    format!("{PREFIX}{}:{}", key.id, B64.encode(blob))
}

/// Open a sealed value (clear text passes through).
///
/// # Errors
/// When the value is sealed under a key the keyring does not hold, or was altered.
pub fn open(stored: &str) -> Result<String, OpenError> {
    let Some(rest) = stored.strip_prefix(PREFIX) else { return Ok(stored.to_owned()) };
    let (id, blob) = rest.split_once(':').ok_or(OpenError::Malformed)?;
    let ring = KEYRING.get().ok_or(OpenError::NoKeyring)?;
    let key = ring.0.iter().find(|k| k.id == id).ok_or_else(|| OpenError::UnknownKey { id: id.to_owned() })?;
    let blob = B64.decode(blob).map_err(|_| OpenError::Malformed)?;
    if blob.len() < 12 {
        return Err(OpenError::Malformed);
    }
    let plain = key.cipher.decrypt(Nonce::from_slice(&blob[..12]), &blob[12..]).map_err(|_| OpenError::Altered)?;
    Ok(String::from_utf8(plain)?)
}

/// Why [`open`] cannot open a sealed value.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("malformed sealed value")]
    Malformed,
    #[error("a sealed secret needs HOOKLINE_MASTER_KEY")]
    NoKeyring,
    #[error("secret sealed with key {id}, which is not in HOOKLINE_MASTER_KEY or HOOKLINE_MASTER_KEY_PREVIOUS")]
    UnknownKey { id: String },
    /// The AEAD tag does not match: altered, or a key with a clashing id.
    #[error("sealed value altered")]
    Altered,
    #[error("sealed value is not text")]
    NotText(#[from] std::string::FromUtf8Error),
}

/// Whether `stored` is sealed under the current key (so reseal can skip it).
pub fn is_current(stored: &str) -> bool {
    match (KEYRING.get(), stored.strip_prefix(PREFIX)) {
        (Some(ring), Some(rest)) => rest.starts_with(&format!("{}:", ring.0[0].id)),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k1 = B64.encode([7u8; 32]);
        let k2 = B64.encode([9u8; 32]);
        install(Keyring::parse(&k2, &[&k1], "HOOKLINE_MASTER_KEY").unwrap());
        let sealed = seal("whsec_top");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("whsec_top"));
        assert_eq!(open(&sealed).unwrap(), "whsec_top");
        assert!(is_current(&sealed));
        assert_eq!(open("clear").unwrap(), "clear");
        let mut bad = sealed.clone();
        bad.pop();
        bad.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(open(&bad).is_err());
        assert!(open("sealed:v1:deadbeef:AAAA").unwrap_err().to_string().contains("not in HOOKLINE_MASTER_KEY"));
        assert!(Keyring::parse("short", &[], "HOOKLINE_MASTER_KEY").is_err());
    }
}
