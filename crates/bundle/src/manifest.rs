//! What a bundle is built from: a TOML manifest, or an existing sw-description plus a directory.
//!
//! Manifest format (documented in docs/swu-format.md):
//!
//! ```toml
//! [bundle]
//! images-dir = "build"          # optional; where `filename`s are looked up (default: manifest dir)
//!
//! [software]                    # becomes `software = { ... }` in sw-description, key by key
//! version = "1.2.0"
//! hardware-compatibility = ["1.0"]
//!
//! [[software.images]]
//! filename = "rootfs.ext4"
//! source = "out/rootfs.ext4"    # keel-only: file to read (relative to the manifest); removed
//! device = "/dev/mmcblk0p2"
//! type = "raw"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_formats::swdesc::{array_or_list, is_valid_name, Group, SwDescription, Value};

use crate::BundleError;

/// A description plus where each member's bytes come from.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    /// The sw-description to complete and sign (keel-only keys already removed); [`create`]
    /// fills in `sha256`, `ivt` and the computed members' properties.
    ///
    /// [`create`]: crate::create
    pub description: SwDescription,
    /// Directory in which a member's `filename` is looked up when it has no explicit source.
    pub images_dir: PathBuf,
    /// Explicit sources: member name -> file.
    pub sources: BTreeMap<String, PathBuf>,
    /// Members computed at creation time from an image (manifest keys `delta-from`, `chunked`):
    /// member name -> how.
    pub derived: BTreeMap<String, Derivation>,
}

/// A member keel computes from an image of the manifest (docs/delta-format.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Derivation {
    /// `delta-from = "old.img"`: member `<filename>.kdelta`, `type = "keel-delta"`, a static delta
    /// from `seed` to the image `target` (a member name, resolved like any other source).
    Delta {
        /// Member name of the new image (the entry's `filename`), whose source is read.
        target: String,
        /// The old image the device holds, resolved against the manifest directory.
        seed: PathBuf,
    },
    /// `chunked = true`: member `<filename>.kidx`, `type = "keel-chunked"`, the FastCDC chunk
    /// index of `target`; the pack `pack` is written next to the bundle.
    Chunked {
        /// Member name of the image (the entry's `filename`), whose source is chunked.
        target: String,
        /// File name of the pack (`<filename>.kpack`), written in the pack directory and named
        /// by the entry's `pack` property.
        pack: String,
    },
}

/// Handler type of a chunk index entry.
pub use keel_formats::swdesc::KEEL_CHUNKED_TYPE as CHUNKED_TYPE;
/// Handler type of a static delta entry.
pub use keel_formats::swdesc::KEEL_DELTA_TYPE as DELTA_TYPE;

impl BundleSpec {
    /// Reads a TOML manifest.
    pub fn from_manifest(path: &Path) -> Result<BundleSpec, BundleError> {
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::io(path, e))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_manifest_str(&text, &base).map_err(|message| BundleError::Manifest {
            path: path.into(),
            message,
        })
    }

    /// Parses manifest text; relative paths are resolved against `base`.
    pub fn from_manifest_str(text: &str, base: &Path) -> Result<BundleSpec, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut images_dir = base.to_path_buf();
        let mut software = None;
        for (key, value) in table {
            match key.as_str() {
                "bundle" => {
                    let toml::Value::Table(t) = value else {
                        return Err("[bundle] must be a table".into());
                    };
                    for (k, v) in t {
                        match (k.as_str(), v) {
                            ("images-dir", toml::Value::String(dir)) => images_dir = base.join(dir),
                            (other, _) => return Err(format!("[bundle]: unknown key {other:?}")),
                        }
                    }
                }
                "software" => software = Some(value),
                other => {
                    return Err(format!(
                        "unknown top-level key {other:?} (expected [bundle] and [software])"
                    ))
                }
            }
        }
        let software = software.ok_or("missing [software] table")?;
        let Value::Group(mut software) = toml_to_value(software, "software")? else {
            return Err("software must be a table".into());
        };
        let mut sources = BTreeMap::new();
        let mut derived = BTreeMap::new();
        take_sources(&mut software, base, &mut sources, &mut derived)?;
        let mut root = Group::new();
        root.set("software", Value::Group(software));
        let description = SwDescription::from_root(root).map_err(|e| e.to_string())?;
        Ok(BundleSpec {
            description,
            images_dir,
            sources,
            derived,
        })
    }

    /// An existing sw-description (libconfig or JSON); images are read from `images_dir`.
    pub fn from_sw_description(path: &Path, images_dir: &Path) -> Result<BundleSpec, BundleError> {
        let bytes = std::fs::read(path).map_err(|e| BundleError::io(path, e))?;
        let description = SwDescription::parse(&bytes)?;
        Ok(BundleSpec {
            description,
            images_dir: images_dir.to_path_buf(),
            sources: BTreeMap::new(),
            derived: BTreeMap::new(),
        })
    }

    /// The file a member is read from.
    pub fn source_of(&self, name: &str) -> PathBuf {
        self.sources
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.images_dir.join(name))
    }
}

/// Removes the keel-only keys `source`, `delta-from` and `chunked` from entry groups, recording
/// member name -> path and the derived members (whose entries are renamed and retyped here).
fn take_sources(
    g: &mut Group,
    base: &Path,
    sources: &mut BTreeMap<String, PathBuf>,
    derived: &mut BTreeMap<String, Derivation>,
) -> Result<(), String> {
    for (key, value) in g.iter_mut() {
        match value {
            Value::Group(child) => take_sources(child, base, sources, derived)?,
            Value::List(items)
                if [
                    "images",
                    "files",
                    "scripts",
                    "bootenv",
                    "uboot",
                    "partitions",
                ]
                .contains(&key) =>
            {
                for item in items.iter_mut() {
                    let Value::Group(entry) = item else { continue };
                    take_entry_keys(key, entry, base, sources, derived)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn take_entry_keys(
    section: &str,
    entry: &mut Group,
    base: &Path,
    sources: &mut BTreeMap<String, PathBuf>,
    derived: &mut BTreeMap<String, Derivation>,
) -> Result<(), String> {
    let source = entry.remove("source");
    let delta_from = entry.remove("delta-from");
    let chunked = entry.remove("chunked");
    if source.is_none() && delta_from.is_none() && chunked.is_none() {
        return Ok(());
    }
    let Some(Value::Str(name)) = entry.get("filename").cloned() else {
        return Err(format!(
            "{section}: an entry with source, delta-from or chunked has no filename"
        ));
    };
    if let Some(source) = source {
        let Value::Str(source) = source else {
            return Err(format!("{section}: source must be a string"));
        };
        let path = base.join(&source);
        if let Some(previous) = sources.insert(name.clone(), path.clone()) {
            if previous != path {
                return Err(format!("filename {name:?} has two different sources"));
            }
        }
    }
    let chunked = match chunked {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(format!("{name:?}: chunked must be true or false")),
    };
    let derivation = match delta_from {
        Some(_) if chunked => {
            return Err(format!(
            "{name:?}: delta-from and chunked exclude each other (one entry, one way to install)"
        ))
        }
        Some(Value::Str(seed)) => Derivation::Delta {
            target: name.clone(),
            seed: base.join(seed),
        },
        Some(_) => {
            return Err(format!(
                "{name:?}: delta-from must be a string (a file path)"
            ))
        }
        None if chunked => Derivation::Chunked {
            target: name.clone(),
            pack: format!("{name}.kpack"),
        },
        None => return Ok(()),
    };
    if section != "images" {
        return Err(format!(
            "{name:?}: delta-from and chunked are for images entries, not {section}"
        ));
    }
    let (member, kind) = match &derivation {
        Derivation::Delta { .. } => (format!("{name}.kdelta"), DELTA_TYPE),
        Derivation::Chunked { .. } => (format!("{name}.kidx"), CHUNKED_TYPE),
    };
    entry.set("filename", Value::Str(member.clone()));
    entry.set("type", Value::Str(kind.to_string()));
    if let Some(previous) = derived.insert(member.clone(), derivation.clone()) {
        if previous != derivation {
            return Err(format!(
                "{member:?} is derived twice in different ways (different delta-from?)"
            ));
        }
    }
    Ok(())
}

fn toml_to_value(v: toml::Value, path: &str) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::Str(s),
        toml::Value::Integer(i) => Value::Int(i),
        toml::Value::Float(f) if f.is_finite() => Value::Float(f),
        toml::Value::Float(_) => {
            return Err(format!(
                "{path}: inf/nan cannot be written to sw-description"
            ))
        }
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(_) => {
            return Err(format!("{path}: dates are not supported, use a string"))
        }
        toml::Value::Array(items) => {
            let values = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| toml_to_value(item, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            // Arrays of tables are always lists (images = ( {..}, {..} )).
            array_or_list(values)
        }
        toml::Value::Table(t) => {
            let mut g = Group::new();
            for (k, item) in t {
                let child = format!("{path}.{k}");
                if !is_valid_name(&k) {
                    return Err(format!("{child}: not a valid sw-description setting name"));
                }
                g.set(k, toml_to_value(item, &child)?);
            }
            Value::Group(g)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_maps_to_sw_description() {
        let text = r#"
            [bundle]
            images-dir = "imgs"
            [software]
            version = "1.0"
            hardware-compatibility = ["1.0"]
            [[software.images]]
            filename = "rootfs.img"
            source = "out/rootfs.ext4"
            device = "/dev/sda2"
            type = "raw"
            [software.images.properties]
            subtype = "image"
            [[software.files]]
            filename = "app.conf"
            path = "/etc/app.conf"
            [software.stable.copy1]
            images = [ { filename = "rootfs.img", device = "/dev/sda2" } ]
        "#;
        let spec = BundleSpec::from_manifest_str(text, Path::new("/m")).unwrap();
        assert_eq!(
            spec.source_of("rootfs.img"),
            Path::new("/m/out/rootfs.ext4")
        );
        assert_eq!(spec.source_of("app.conf"), Path::new("/m/imgs/app.conf"));
        let sw = spec.description.software().unwrap();
        assert_eq!(
            sw.images[0].properties,
            vec![("subtype".to_string(), vec!["image".to_string()])]
        );
        assert!(!sw.images[0].fields.contains("source"));
        let c1 = spec.description.select(&["stable", "copy1"]).unwrap();
        assert_eq!(c1.images[0].device.as_deref(), Some("/dev/sda2"));
        let text = spec.description.to_libconfig();
        assert!(
            text.contains("images = (") && text.contains("hardware-compatibility = [ \"1.0\" ];"),
            "{text}"
        );

        let err =
            BundleSpec::from_manifest_str("[software]\n\"a b\" = 1\n", Path::new("/")).unwrap_err();
        assert!(err.contains("software.a b"), "{err}");
        let err = BundleSpec::from_manifest_str("[softwar]\n", Path::new("/")).unwrap_err();
        assert!(err.contains("softwar"), "{err}");
    }
}
