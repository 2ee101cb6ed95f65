//! Object ids, as DESIGN's Identity section has them: 64 hex characters,
//! 16 bytes derived from the name (an HMAC under the namespace's key) or
//! random, then a 16-byte check code (an HMAC of the first 16 under the same
//! key). `id_from_string` verifies the check code, so an id from another
//! namespace, or a typo, is an error and never a new object.
//!
//! Namespace keys derive from one node secret kept in `data_dir/node.secret`,
//! created on first start: the same name in the same namespace gives the same
//! id across restarts and processes for as long as the data dir lives.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// The node secret's file name in the data dir.
pub const SECRET_FILE: &str = "node.secret";
const SECRET_BYTES: usize = 32;

/// An object id: 16 bytes of identity and a 16-byte check code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    /// Parses the hex form without checking the check code: for ids the
    /// node stored itself, never for client input (use
    /// [`NamespaceKey::id_from_string`]).
    pub fn from_hex(text: &str) -> Option<ObjectId> {
        if text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(ObjectId(bytes))
    }

    /// The 64-character lowercase hex form.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

/// Why a string is not an id of a namespace.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// Not 64 characters.
    #[error("object id must be 64 hex characters, got {0}")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("object id must be hex digits only")]
    NotHex,
    /// The check code does not match.
    #[error("object id is not of namespace {namespace}: a typo, or an id from another namespace")]
    WrongNamespace {
        /// The namespace it was checked against.
        namespace: String,
    },
}

/// A namespace's key: ids are derived and checked with it.
#[derive(Clone)]
pub struct NamespaceKey {
    namespace: String,
    key: [u8; 32],
}

impl fmt::Debug for NamespaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamespaceKey")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("hmac accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl NamespaceKey {
    /// The key of `namespace` under the node secret.
    pub fn derive(node_secret: &[u8], namespace: &str) -> NamespaceKey {
        NamespaceKey {
            namespace: namespace.to_owned(),
            key: hmac(node_secret, &[b"torpor namespace\0", namespace.as_bytes()]),
        }
    }

    /// The namespace's name.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn with_check(&self, identity: [u8; 16]) -> ObjectId {
        let check = hmac(&self.key, &[b"check\0", &identity]);
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&identity);
        id[16..].copy_from_slice(&check[..16]);
        ObjectId(id)
    }

    /// The id of `name`: the same forever for the same namespace and node.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        let derived = hmac(&self.key, &[b"name\0", name.as_bytes()]);
        let mut identity = [0u8; 16];
        identity.copy_from_slice(&derived[..16]);
        self.with_check(identity)
    }

    /// A fresh random id.
    pub fn new_unique_id(&self) -> std::io::Result<ObjectId> {
        let mut identity = [0u8; 16];
        getrandom::fill(&mut identity).map_err(std::io::Error::other)?;
        Ok(self.with_check(identity))
    }

    /// Parses and verifies a 64-hex id of this namespace.
    pub fn id_from_string(&self, text: &str) -> Result<ObjectId, IdError> {
        if text.len() != 64 {
            return Err(IdError::Length(text.len()));
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = text.get(i * 2..i * 2 + 2).ok_or(IdError::NotHex)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| IdError::NotHex)?;
        }
        let mut identity = [0u8; 16];
        identity.copy_from_slice(&bytes[..16]);
        let expected = self.with_check(identity);
        // Not secret-dependent timing that matters: the check code protects
        // against typos and namespace mix-ups, not forgery.
        if expected.0 != bytes {
            return Err(IdError::WrongNamespace {
                namespace: self.namespace.clone(),
            });
        }
        Ok(expected)
    }
}

/// Reads the node secret from `data_dir`, creating it (random, mode 0600)
/// on first start.
pub fn load_or_create_secret(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read(&path) {
        Ok(secret) if secret.len() == SECRET_BYTES => return Ok(secret),
        Ok(secret) => {
            return Err(std::io::Error::other(format!(
                "{} holds {} bytes, expected {SECRET_BYTES}",
                path.display(),
                secret.len()
            )))
        }
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        Err(_) => {}
    }
    std::fs::create_dir_all(data_dir)?;
    let mut secret = vec![0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(std::io::Error::other)?;
    let temp = data_dir.join(format!("{SECRET_FILE}.{}", std::process::id()));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(&secret)?;
        file.sync_all()?;
    }
    // Link, not rename: if another process created it first, keep theirs.
    match std::fs::hard_link(&temp, &path) {
        Ok(()) => {
            std::fs::remove_file(&temp)?;
            Ok(secret)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&temp)?;
            load_or_create_secret(data_dir)
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_stable_ids_that_check_only_in_their_namespace() {
        let rooms = NamespaceKey::derive(b"secret", "ROOMS");
        let games = NamespaceKey::derive(b"secret", "GAMES");
        let id = rooms.id_from_name("lobby");
        assert_eq!(id, rooms.id_from_name("lobby"));
        assert_ne!(id, rooms.id_from_name("lobby2"));
        assert_eq!(id.to_hex().len(), 64);
        assert_eq!(rooms.id_from_string(&id.to_hex()), Ok(id));
        assert!(matches!(
            games.id_from_string(&id.to_hex()),
            Err(IdError::WrongNamespace { .. })
        ));
        assert_ne!(
            NamespaceKey::derive(b"other", "ROOMS").id_from_name("lobby"),
            id
        );
    }

    #[test]
    fn typos_and_malformed_ids_are_refused() {
        let rooms = NamespaceKey::derive(b"secret", "ROOMS");
        let mut hex = rooms.id_from_name("lobby").to_hex();
        assert_eq!(rooms.id_from_string(&hex[..63]), Err(IdError::Length(63)));
        hex.replace_range(0..1, if hex.starts_with('0') { "1" } else { "0" });
        assert!(matches!(
            rooms.id_from_string(&hex),
            Err(IdError::WrongNamespace { .. })
        ));
        assert_eq!(rooms.id_from_string(&"zz".repeat(32)), Err(IdError::NotHex));
        assert_eq!(rooms.id_from_string(&"é".repeat(32)), Err(IdError::NotHex));
    }

    #[test]
    fn unique_ids_are_distinct_and_valid() {
        let rooms = NamespaceKey::derive(b"secret", "ROOMS");
        let a = rooms.new_unique_id().unwrap();
        let b = rooms.new_unique_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(rooms.id_from_string(&a.to_hex()), Ok(a));
    }

    #[test]
    fn the_node_secret_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(dir.path()).unwrap();
        assert_eq!(load_or_create_secret(dir.path()).unwrap(), first);
        assert_eq!(first.len(), SECRET_BYTES);
    }
}
