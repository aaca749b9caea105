//! The offline TUF root ceremony with keel-tuf-repo: root keys, one online key for the targets,
//! snapshot and timestamp roles, and the signed `1.root.json`.

use std::path::Path;

use keel_tuf_repo::{create_root, RootKeys, SigningKey};

/// Seconds in a day (TUF expiry arithmetic).
pub const DAY: i64 = 86_400;

/// Root keys with a threshold and one online key for the three online roles.
pub struct TufRoot {
    /// The offline root keys.
    pub root_keys: Vec<SigningKey>,
    /// How many root keys sign a root.
    pub threshold: u64,
    /// The online key (targets, snapshot, timestamp).
    pub online: SigningKey,
}

impl TufRoot {
    /// `root_keys` with `threshold`, and a new ed25519 online key.
    pub fn new(root_keys: Vec<SigningKey>, threshold: u64) -> TufRoot {
        TufRoot {
            root_keys,
            threshold,
            online: SigningKey::generate_ed25519(),
        }
    }

    /// One ed25519 root key (threshold 1) and an ed25519 online key.
    pub fn single() -> TufRoot {
        TufRoot::new(vec![SigningKey::generate_ed25519()], 1)
    }

    /// The root's key assignment (the online key alone in each online role).
    pub fn keys(&self) -> RootKeys {
        let root: Vec<&SigningKey> = self.root_keys.iter().collect();
        online_keys(&root, self.threshold, &self.online)
    }

    /// Writes the first root into `repo` (its `metadata/`), signed by the first `threshold` root
    /// keys and expiring at `expires` (Unix seconds); returns its bytes.
    pub fn create(&self, repo: &Path, expires: i64) -> Vec<u8> {
        let signers: Vec<&SigningKey> = self
            .root_keys
            .iter()
            .take(self.threshold as usize)
            .collect();
        create_root(repo, &self.keys(), &signers, expires).unwrap()
    }
}

/// A root key assignment: `root` with `threshold`, `online` alone in each online role.
pub fn online_keys(root: &[&SigningKey], threshold: u64, online: &SigningKey) -> RootKeys {
    RootKeys {
        root: root.iter().map(|key| key.public()).collect(),
        root_threshold: threshold,
        targets: vec![online.public()],
        snapshot: vec![online.public()],
        timestamp: vec![online.public()],
    }
}
