//! Metadata parsing: the signed envelope, the four top-level roles and delegations.
//!
//! Signatures are verified over the canonical JSON of the generic `signed` value, so unknown fields are covered
//! exactly as the signer saw them; the typed structs below are read from the same bytes for the checks.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::error::Error;
use crate::keys::PublicKey;

/// The names of the four top-level roles.
pub const TOP_LEVEL_ROLES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// Hashes in the order written in the metadata (python-tuf prefixes consistent-snapshot target file names with
/// the first one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hashes(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Hashes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor;
        impl<'de> Visitor<'de> for OrderedVisitor {
            type Value = Hashes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of hash algorithm to hex digest")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Hashes, A::Error> {
                let mut entries: Vec<(String, String)> = Vec::new();
                while let Some((algorithm, digest)) = map.next_entry::<String, String>()? {
                    if entries.iter().any(|(existing, _)| *existing == algorithm) {
                        return Err(serde::de::Error::custom(format!(
                            "hash algorithm {algorithm:?} listed twice"
                        )));
                    }
                    entries.push((algorithm, digest));
                }
                if entries.is_empty() {
                    return Err(serde::de::Error::custom("hashes must not be empty"));
                }
                Ok(Hashes(entries))
            }
        }
        deserializer.deserialize_map(OrderedVisitor)
    }
}

/// Incremental hashing of every algorithm listed in a `Hashes` record.
pub(crate) struct MultiHasher {
    hashers: Vec<(String, String, HasherKind)>,
}

enum HasherKind {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl MultiHasher {
    /// Fails for algorithms this client does not implement (the check is never silently skipped).
    pub(crate) fn new(role: &str, hashes: &Hashes) -> Result<Self, Error> {
        let mut hashers = Vec::new();
        for (algorithm, digest) in &hashes.0 {
            let kind = match algorithm.as_str() {
                "sha256" => HasherKind::Sha256(Sha256::new()),
                "sha512" => HasherKind::Sha512(Sha512::new()),
                _ => {
                    return Err(Error::UnsupportedHash {
                        role: role.to_string(),
                        algorithm: algorithm.clone(),
                    })
                }
            };
            hashers.push((algorithm.clone(), digest.to_ascii_lowercase(), kind));
        }
        Ok(MultiHasher { hashers })
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        for (_, _, kind) in &mut self.hashers {
            match kind {
                HasherKind::Sha256(h) => h.update(data),
                HasherKind::Sha512(h) => h.update(data),
            }
        }
    }

    pub(crate) fn check(self, role: &str) -> Result<(), Error> {
        for (algorithm, expected, kind) in self.hashers {
            let actual = match kind {
                HasherKind::Sha256(h) => hex::encode(h.finalize()),
                HasherKind::Sha512(h) => hex::encode(h.finalize()),
            };
            if actual != expected {
                return Err(Error::HashMismatch {
                    role: role.to_string(),
                    algorithm,
                });
            }
        }
        Ok(())
    }
}

/// A `meta` entry of timestamp or snapshot.
#[derive(Debug, Clone, Deserialize)]
pub struct MetaFile {
    /// Version the listed metadata file must have (at least 1).
    pub version: u64,
    /// Exact length of the listed file in bytes, if the repository records it; also bounds the
    /// download.
    #[serde(default)]
    pub length: Option<u64>,
    /// Hashes of the listed file's bytes, if the repository records them.
    #[serde(default)]
    pub hashes: Option<Hashes>,
}

impl MetaFile {
    /// Checks `data` against the optional length and hashes.
    pub fn verify(&self, role: &str, data: &[u8]) -> Result<(), Error> {
        if let Some(length) = self.length {
            if data.len() as u64 != length {
                return Err(Error::LengthMismatch {
                    role: role.to_string(),
                    expected: length,
                    found: data.len() as u64,
                });
            }
        }
        if let Some(hashes) = &self.hashes {
            let mut hasher = MultiHasher::new(role, hashes)?;
            hasher.update(data);
            hasher.check(role)?;
        }
        Ok(())
    }
}

/// Keys and threshold of a role.
#[derive(Debug, Clone, Deserialize)]
pub struct RoleKeys {
    /// IDs of the keys authorized for the role (distinct; looked up in the delegator's `keys`).
    pub keyids: Vec<String>,
    /// Number of valid signatures from distinct authorized keys required, at least 1.
    pub threshold: u64,
}

/// `root` metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct Root {
    /// Whether metadata is fetched as `N.role.json` and targets as `<hash>.<name>`.
    #[serde(default)]
    pub consistent_snapshot: bool,
    /// Every key the top-level roles use, by key ID (IDs are opaque labels, TAP 12).
    pub keys: BTreeMap<String, PublicKey>,
    /// Keys and threshold of each of the four top-level roles (exactly those four).
    pub roles: BTreeMap<String, RoleKeys>,
}

/// `timestamp` metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct Timestamp {
    /// Listed files by name; must contain `snapshot.json`.
    pub meta: BTreeMap<String, MetaFile>,
}

impl Timestamp {
    /// The `snapshot.json` entry (presence is checked at parse time).
    pub fn snapshot_meta(&self) -> Option<&MetaFile> {
        self.meta.get("snapshot.json")
    }
}

/// `snapshot` metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    /// Every targets metadata file (`targets.json`, `<delegated role>.json`) with its version.
    pub meta: BTreeMap<String, MetaFile>,
}

/// One target: length, hashes and optional custom data.
#[derive(Debug, Clone, Deserialize)]
pub struct TargetFile {
    /// Exact length of the target in bytes; downloads are cut off past it.
    pub length: u64,
    /// Hashes of the target's bytes (at least one; every listed supported algorithm is checked).
    pub hashes: Hashes,
    /// Repository-specific data, uninterpreted by this crate.
    #[serde(default)]
    pub custom: Option<Value>,
}

/// A delegated role (classic delegation).
#[derive(Debug, Clone, Deserialize)]
pub struct DelegatedRole {
    /// Role name, also its metadata file name (`<name>.json`); never a top-level role name.
    pub name: String,
    /// IDs of the keys authorized for the role, looked up in [`Delegations::keys`].
    pub keyids: Vec<String>,
    /// Number of valid signatures from distinct authorized keys required, at least 1.
    pub threshold: u64,
    /// If the role is responsible for a target, the search stops here (no later sibling is
    /// consulted).
    pub terminating: bool,
    /// Shell-style patterns of the target paths the role may sign (`*` matches within one path
    /// segment). Exclusive with `path_hash_prefixes`.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Hex prefixes of `sha256(target path)` the role may sign (hashed bins). Exclusive with
    /// `paths`.
    #[serde(default)]
    pub path_hash_prefixes: Option<Vec<String>>,
}

impl DelegatedRole {
    /// python-tuf `DelegatedRole.is_delegated_path`.
    pub fn is_delegated_path(&self, target: &str) -> bool {
        if let Some(prefixes) = &self.path_hash_prefixes {
            let digest = hex::encode(Sha256::digest(target.as_bytes()));
            prefixes
                .iter()
                .any(|prefix| digest.starts_with(prefix.as_str()))
        } else if let Some(patterns) = &self.paths {
            patterns.iter().any(|pattern| path_matches(target, pattern))
        } else {
            false
        }
    }
}

/// TAP 15 succinct hashed-bin delegation.
#[derive(Debug, Clone, Deserialize)]
pub struct SuccinctRoles {
    /// IDs of the keys authorized for every bin.
    pub keyids: Vec<String>,
    /// Signatures required on every bin, at least 1.
    pub threshold: u64,
    /// Number of leading bits of `sha256(target path)` that select the bin (1..=32), so there
    /// are `2^bit_length` bins.
    pub bit_length: u32,
    /// Bin names are `<name_prefix>-<bin number in lower-case hex, zero-padded>`.
    pub name_prefix: String,
}

impl SuccinctRoles {
    /// `bit_length` clamped to 1..=32 (parsing rejects anything else; this keeps hand-built values panic-free).
    fn bits(&self) -> u32 {
        self.bit_length.clamp(1, 32)
    }

    fn suffix_len(&self) -> usize {
        let bins: u64 = 1u64 << self.bits();
        format!("{:x}", bins - 1).len()
    }

    /// The bin responsible for `target`.
    pub fn role_for_target(&self, target: &str) -> String {
        let digest = Sha256::digest(target.as_bytes());
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let bin = first >> (32 - self.bits());
        format!(
            "{}-{:0width$x}",
            self.name_prefix,
            bin,
            width = self.suffix_len()
        )
    }

    /// True if `name` is one of the bins.
    pub fn is_delegated_role(&self, name: &str) -> bool {
        let Some(suffix) = name
            .strip_prefix(&self.name_prefix)
            .and_then(|rest| rest.strip_prefix('-'))
        else {
            return false;
        };
        if suffix.len() != self.suffix_len()
            || !suffix
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return false;
        }
        u64::from_str_radix(suffix, 16).is_ok_and(|bin| bin < (1u64 << self.bits()))
    }
}

/// `delegations` of a targets role.
#[derive(Debug, Clone, Deserialize)]
pub struct Delegations {
    /// Keys the delegated roles use, by key ID.
    pub keys: BTreeMap<String, PublicKey>,
    /// Classic delegations, in search order. Exactly one of `roles` and `succinct_roles` is set.
    #[serde(default)]
    pub roles: Option<Vec<DelegatedRole>>,
    /// TAP 15 hashed bins. Exactly one of `roles` and `succinct_roles` is set.
    #[serde(default)]
    pub succinct_roles: Option<SuccinctRoles>,
}

impl Delegations {
    /// Child roles that may sign `target`, in search order, with their `terminating` flag.
    pub fn roles_for_target(&self, target: &str) -> Vec<(String, bool)> {
        if let Some(roles) = &self.roles {
            roles
                .iter()
                .filter(|role| role.is_delegated_path(target))
                .map(|r| (r.name.clone(), r.terminating))
                .collect()
        } else if let Some(succinct) = &self.succinct_roles {
            // python-tuf treats succinct bins as terminating.
            vec![(succinct.role_for_target(target), true)]
        } else {
            Vec::new()
        }
    }

    /// Keys and threshold of the delegated role `name`, if this delegates it.
    pub fn role_keys(&self, name: &str) -> Option<RoleKeys> {
        if let Some(roles) = &self.roles {
            roles.iter().find(|r| r.name == name).map(|r| RoleKeys {
                keyids: r.keyids.clone(),
                threshold: r.threshold,
            })
        } else if let Some(succinct) = &self.succinct_roles {
            succinct.is_delegated_role(name).then(|| RoleKeys {
                keyids: succinct.keyids.clone(),
                threshold: succinct.threshold,
            })
        } else {
            None
        }
    }
}

/// `targets` metadata (top-level or delegated).
#[derive(Debug, Clone, Deserialize)]
pub struct Targets {
    /// Targets this role signs, by target path (e.g. the bundle's file name).
    pub targets: BTreeMap<String, TargetFile>,
    /// Roles this role delegates to, if any.
    #[serde(default)]
    pub delegations: Option<Delegations>,
}

/// Fields every role has.
#[derive(Debug, Clone, Deserialize)]
struct Common {
    #[serde(rename = "_type")]
    role_type: String,
    spec_version: String,
    version: u64,
    expires: String,
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    signed: &'a RawValue,
    signatures: Vec<RawSignature>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawSignature {
    keyid: String,
    sig: String,
}

/// A role type's `_type` string and its per-type validation.
pub trait RoleType: serde::de::DeserializeOwned {
    /// The `_type` value.
    const TYPE: &'static str;
    /// Checks beyond the JSON shape (python-tuf's constructor checks).
    fn validate(&self) -> Result<(), String>;
}

fn validate_role_keys(what: &str, role: &RoleKeys) -> Result<(), String> {
    if role.threshold < 1 {
        return Err(format!("{what}: threshold must be at least 1"));
    }
    let unique: BTreeSet<&String> = role.keyids.iter().collect();
    if unique.len() != role.keyids.len() {
        return Err(format!("{what}: duplicate key IDs"));
    }
    Ok(())
}

impl RoleType for Root {
    const TYPE: &'static str = "root";
    fn validate(&self) -> Result<(), String> {
        let names: BTreeSet<&str> = self.roles.keys().map(String::as_str).collect();
        if names != TOP_LEVEL_ROLES.iter().copied().collect() {
            return Err("roles must be exactly root, timestamp, snapshot and targets".into());
        }
        for (name, role) in &self.roles {
            validate_role_keys(name, role)?;
        }
        Ok(())
    }
}

impl RoleType for Timestamp {
    const TYPE: &'static str = "timestamp";
    fn validate(&self) -> Result<(), String> {
        let meta = self
            .snapshot_meta()
            .ok_or("meta has no snapshot.json entry")?;
        validate_meta_file("snapshot.json", meta)
    }
}

fn validate_meta_file(name: &str, meta: &MetaFile) -> Result<(), String> {
    if meta.version < 1 {
        return Err(format!("meta {name}: version must be at least 1"));
    }
    if meta.length == Some(0) {
        return Err(format!("meta {name}: length must be positive"));
    }
    Ok(())
}

impl RoleType for Snapshot {
    const TYPE: &'static str = "snapshot";
    fn validate(&self) -> Result<(), String> {
        self.meta
            .iter()
            .try_for_each(|(name, meta)| validate_meta_file(name, meta))
    }
}

impl RoleType for Targets {
    const TYPE: &'static str = "targets";
    fn validate(&self) -> Result<(), String> {
        let Some(delegations) = &self.delegations else {
            return Ok(());
        };
        match (&delegations.roles, &delegations.succinct_roles) {
            (Some(_), Some(_)) => {
                return Err("delegations have both roles and succinct_roles".into())
            }
            (None, None) => return Err("delegations have neither roles nor succinct_roles".into()),
            (Some(roles), None) => {
                let mut names = BTreeSet::new();
                for role in roles {
                    if TOP_LEVEL_ROLES.contains(&role.name.as_str()) {
                        return Err(format!("delegated role may not be named {:?}", role.name));
                    }
                    if !names.insert(role.name.as_str()) {
                        return Err(format!("delegated role {:?} listed twice", role.name));
                    }
                    if role.paths.is_some() && role.path_hash_prefixes.is_some() {
                        return Err(format!(
                            "delegated role {:?} has both paths and path_hash_prefixes",
                            role.name
                        ));
                    }
                    validate_role_keys(
                        &role.name,
                        &RoleKeys {
                            keyids: role.keyids.clone(),
                            threshold: role.threshold,
                        },
                    )?;
                }
            }
            (None, Some(succinct)) => {
                if !(1..=32).contains(&succinct.bit_length) {
                    return Err("succinct_roles.bit_length must be in 1..=32".into());
                }
                let keys = RoleKeys {
                    keyids: succinct.keyids.clone(),
                    threshold: succinct.threshold,
                };
                validate_role_keys("succinct_roles", &keys)?;
            }
        }
        Ok(())
    }
}

/// Parsed (not yet verified) metadata of one role.
#[derive(Debug, Clone)]
pub struct Metadata<T> {
    /// The typed `signed` section.
    pub signed: T,
    /// `signed.version`.
    pub version: u64,
    /// `signed.expires` in seconds since the Unix epoch.
    pub expires: i64,
    /// `signed.spec_version`.
    pub spec_version: String,
    canonical_signed: Vec<u8>,
    signatures: Vec<RawSignature>,
}

impl<T: RoleType> Metadata<T> {
    /// Parses metadata for `role` (a role name for messages; the `_type` must be `T::TYPE`).
    pub fn from_bytes(role: &str, data: &[u8]) -> Result<Self, Error> {
        let envelope: RawEnvelope =
            serde_json::from_slice(data).map_err(|e| Error::malformed(role, e))?;
        let text = envelope.signed.get();
        let common: Common = serde_json::from_str(text).map_err(|e| Error::malformed(role, e))?;
        if common.role_type != T::TYPE {
            return Err(Error::WrongType {
                role: role.to_string(),
                expected: T::TYPE,
                found: common.role_type,
            });
        }
        check_spec_version(role, &common.spec_version)?;
        if common.version < 1 {
            return Err(Error::malformed(role, "version must be at least 1"));
        }
        let expires = crate::time::parse_expires(&common.expires).ok_or_else(|| {
            Error::malformed(
                role,
                format!("expires {:?} is not YYYY-MM-DDTHH:MM:SSZ", common.expires),
            )
        })?;
        let signed: T = serde_json::from_str(text).map_err(|e| Error::malformed(role, e))?;
        signed.validate().map_err(|e| Error::malformed(role, e))?;
        let generic: Value = serde_json::from_str(text).map_err(|e| Error::malformed(role, e))?;
        let canonical_signed =
            crate::canonical::encode(&generic).map_err(|e| Error::malformed(role, e))?;
        let mut seen = BTreeSet::new();
        for signature in &envelope.signatures {
            if !seen.insert(signature.keyid.as_str()) {
                return Err(Error::malformed(
                    role,
                    format!("several signatures for key ID {}", signature.keyid),
                ));
            }
        }
        Ok(Metadata {
            signed,
            version: common.version,
            expires,
            spec_version: common.spec_version,
            canonical_signed,
            signatures: envelope.signatures,
        })
    }

    /// Checks that a threshold of the distinct keys authorized by `role_keys` (looked up in `keys`) signed this.
    pub fn verify_threshold(
        &self,
        role: &str,
        delegator: &str,
        keys: &BTreeMap<String, PublicKey>,
        role_keys: &RoleKeys,
    ) -> Result<(), Error> {
        let mut valid: u64 = 0;
        let mut counted = BTreeSet::new();
        for keyid in &role_keys.keyids {
            if !counted.insert(keyid) {
                continue;
            }
            let (Some(key), Some(signature)) = (
                keys.get(keyid),
                self.signatures.iter().find(|s| &s.keyid == keyid),
            ) else {
                continue;
            };
            if key.verify(&signature.sig, &self.canonical_signed) {
                valid += 1;
            }
        }
        if valid < role_keys.threshold.max(1) {
            return Err(Error::Threshold {
                role: role.to_string(),
                delegator: delegator.to_string(),
                valid,
                threshold: role_keys.threshold,
            });
        }
        Ok(())
    }

    /// True if the metadata expired at or before `now` (python-tuf: `now >= expires`).
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires
    }
}

fn check_spec_version(role: &str, version: &str) -> Result<(), Error> {
    let parts: Vec<&str> = version.split('.').collect();
    let well_formed = (parts.len() == 2 || parts.len() == 3)
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed || parts.first() != Some(&"1") {
        return Err(Error::SpecVersion {
            role: role.to_string(),
            found: version.to_string(),
        });
    }
    Ok(())
}

/// python-tuf `_is_target_in_pathpattern`: same number of `/`-separated parts, each matched with fnmatch.
pub fn path_matches(target: &str, pattern: &str) -> bool {
    let target_parts: Vec<&str> = target.split('/').collect();
    let pattern_parts: Vec<&str> = pattern.split('/').collect();
    target_parts.len() == pattern_parts.len()
        && target_parts.iter().zip(&pattern_parts).all(|(t, p)| {
            let text: Vec<char> = t.chars().collect();
            let pattern: Vec<char> = p.chars().collect();
            glob(&text, &pattern)
        })
}

/// Python `fnmatch.fnmatchcase`: `*`, `?`, `[seq]`, `[!seq]` (a `[` without a closing `]` is literal).
fn glob(text: &[char], pattern: &[char]) -> bool {
    // Iterative matcher with single-star backtracking (sufficient because `*` matches any run).
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match class_match(&pattern[p..], text[t]) {
                Some((true, consumed)) => Some(consumed),
                Some((false, _)) => None,
                None => (text[t] == '[').then_some(1),
            },
            Some(&c) => (c == text[t]).then_some(1),
            None => None,
        };
        match step {
            Some(consumed) => {
                p += consumed;
                t += 1;
            }
            None => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == '*')
}

/// Matches `c` against a bracket expression at the start of `pattern`. Returns (matched, pattern chars used), or
/// `None` if the bracket is not closed (then `[` is literal, as in Python).
fn class_match(pattern: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some('!'));
    if negate {
        i += 1;
    }
    let start = i;
    // A `]` right after `[` or `[!` is a literal member.
    if pattern.get(i) == Some(&']') {
        i += 1;
    }
    while pattern.get(i).is_some_and(|&ch| ch != ']') {
        i += 1;
    }
    pattern.get(i)?;
    let members = &pattern[start..i];
    let mut matched = false;
    let mut j = 0;
    while j < members.len() {
        if j + 2 < members.len() && members[j + 1] == '-' {
            if members[j] <= c && c <= members[j + 2] {
                matched = true;
            }
            j += 3;
        } else {
            if members[j] == c {
                matched = true;
            }
            j += 1;
        }
    }
    Some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_like_python() {
        assert!(path_matches("a/b.txt", "a/*.txt"));
        assert!(!path_matches("a/b/c.txt", "a/*.txt"));
        assert!(path_matches("file-1.swu", "file-?.swu"));
        assert!(path_matches("x1", "x[0-9]"));
        assert!(!path_matches("xa", "x[0-9]"));
        assert!(path_matches("xa", "x[!0-9]"));
        assert!(path_matches("x[", "x["));
        assert!(path_matches("abc", "*"));
        assert!(path_matches("", "*"));
        assert!(path_matches("aXbXc", "a*b*c"));
        assert!(!path_matches("aXbXd", "a*b*c"));
    }

    #[test]
    fn succinct_bins_like_python() {
        let roles = SuccinctRoles {
            keyids: vec![],
            threshold: 1,
            bit_length: 11,
            name_prefix: "alice.hbd".into(),
        };
        assert!(roles.is_delegated_role("alice.hbd-7ff"));
        assert!(!roles.is_delegated_role("alice.hbd-800"));
        assert!(!roles.is_delegated_role("alice.hbd-7f"));
        let name = roles.role_for_target("some/target");
        assert!(name.starts_with("alice.hbd-") && name.len() == "alice.hbd-000".len());
    }
}
