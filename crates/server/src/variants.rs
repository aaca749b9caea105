//! Bundle variants of a software module: a full bundle, static deltas (`keel-delta` images, one
//! per source image) and a dynamic bundle (`keel-chunked` images, chunk index in the bundle, pack
//! beside it as another artifact). On upload a `.swu` is classified by reading its
//! `sw-description` only (the signature is the device's business); in deploymentBase each device
//! is offered one bundle: the static delta made for the image its booted slot holds, else the
//! dynamic bundle with its pack, else the full bundle (docs/ddi.md, "Delta and dynamic bundles").

use crate::store::{Artifact, Store};
use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use keel_formats::cpio::CpioReader;
use keel_formats::names::{attributes, properties};
use keel_formats::swdesc::SwDescription;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

pub use keel_formats::swdesc::{KEEL_CHUNKED_TYPE as CHUNKED_TYPE, KEEL_DELTA_TYPE as DELTA_TYPE};
/// Bytes of an upload kept for classification: a `sw-description` must end within them (a
/// larger one is stored as an unclassified, i.e. full, bundle).
pub const HEAD_LIMIT: usize = 2 << 20;
/// Property of a `keel-delta` entry whose delta recompresses zstd frames: the
/// `ZSTD_versionNumber()` it needs (written and checked by keel bundle, docs/swu-format.md).
pub const ZSTD_FRAMES_PROPERTY: &str = properties::ZSTD_FRAMES;
/// DDI attribute in which keel-agent reports its `ZSTD_versionNumber()` (docs/agent.md).
pub const ZSTD_VERSION_ATTRIBUTE: &str = attributes::DELTA_ZSTD;

/// What a bundle needs from the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    /// `full`, `delta` or `chunked`.
    pub variant: String,
    /// `source-sha256` of every `keel-delta` image: the device's slot must hold each of them.
    pub sources: Vec<String>,
    /// `pack` of every `keel-chunked` image: artifacts of the same module.
    pub packs: Vec<String>,
    /// Distinct `zstd-frames` values of the `keel-delta` images (deltas that recompress zstd
    /// frames): the device must report each as its `keel.delta.zstd`.
    pub zstd_frames: Vec<String>,
}

impl Variant {
    /// A full bundle: needs nothing from the device.
    pub fn full() -> Variant {
        Variant {
            variant: "full".into(),
            sources: Vec::new(),
            packs: Vec::new(),
            zstd_frames: Vec::new(),
        }
    }
}

/// Classifies an artifact from its first bytes; `None` if it is not a `.swu` (no cpio archive
/// starting with a parseable `sw-description` within `head`).
pub fn classify(head: &[u8]) -> Option<Variant> {
    let mut cpio = CpioReader::new(head);
    let header = cpio.next_header().ok()??;
    if header.name != keel_formats::swu::DESCRIPTION_NAME {
        return None;
    }
    let mut description = Vec::new();
    cpio.data().read_to_end(&mut description).ok()?;
    let entries = SwDescription::parse(&description)
        .ok()?
        .tree_member_entries()
        .ok()?;
    let mut sources = BTreeSet::new();
    let mut packs = BTreeSet::new();
    let mut zstd_frames = BTreeSet::new();
    for entry in entries {
        let property = |key: &str| {
            entry
                .properties
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.first())
                .map(|v| v.trim().to_ascii_lowercase())
        };
        match entry.kind.as_deref() {
            // A delta without a source can never match a device: kept as an empty source.
            Some(DELTA_TYPE) => {
                sources.insert(property(properties::SOURCE_SHA256).unwrap_or_default());
                if let Some(version) = property(ZSTD_FRAMES_PROPERTY) {
                    zstd_frames.insert(version);
                }
            }
            Some(CHUNKED_TYPE) => {
                if let Some(pack) = entry
                    .properties
                    .iter()
                    .find(|(k, _)| k == properties::PACK)
                    .and_then(|(_, v)| v.first())
                {
                    packs.insert(pack.clone());
                }
            }
            _ => {}
        }
    }
    let variant = if !sources.is_empty() {
        "delta"
    } else if !packs.is_empty() {
        "chunked"
    } else {
        "full"
    };
    Some(Variant {
        variant: variant.into(),
        sources: sources.into_iter().collect(),
        packs: packs.into_iter().collect(),
        zstd_frames: zstd_frames.into_iter().collect(),
    })
}

/// Passes an upload stream through unchanged while keeping its first `limit` bytes.
pub fn capture_head<S, E>(
    stream: S,
    limit: usize,
) -> (
    impl Stream<Item = Result<Bytes, E>> + Unpin,
    Arc<Mutex<Vec<u8>>>,
)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let head = Arc::new(Mutex::new(Vec::new()));
    let sink = head.clone();
    let stream = stream.inspect(move |item| {
        if let (Ok(bytes), Ok(mut head)) = (item, sink.lock()) {
            let room = limit.saturating_sub(head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..room]);
        }
    });
    (stream, head)
}

/// What a device reported about itself that decides which bundle it can install
/// (docs/agent.md): the image hashes of its booted slot, and the zstd version it recompresses
/// the frames of a framed delta with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceReport {
    /// `keel.slot.<target>.sha256` values; `None` if it reported none.
    pub slot_hashes: Option<BTreeSet<String>>,
    /// `keel.delta.zstd`; `None` if it reported none (it gets no framed delta).
    pub zstd_version: Option<String>,
}

impl DeviceReport {
    /// From a target's attributes JSON.
    pub fn from_attributes(attributes_json: &str) -> DeviceReport {
        let zstd_version = serde_json::from_str::<BTreeMap<String, String>>(attributes_json)
            .ok()
            .and_then(|a| a.get(ZSTD_VERSION_ATTRIBUTE).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty());
        DeviceReport {
            slot_hashes: reported_slot_hashes(attributes_json),
            zstd_version,
        }
    }

    /// Whether the device can apply a delta whose images need these zstd versions.
    fn can_recompress(&self, zstd_frames: &[String]) -> bool {
        zstd_frames
            .iter()
            .all(|needed| self.zstd_version.as_deref() == Some(needed.as_str()))
    }
}

/// The image hashes a device reported for its booted slot (`keel.slot.<target>.sha256`
/// attributes, docs/agent.md); `None` if it reported none.
pub fn reported_slot_hashes(attributes_json: &str) -> Option<BTreeSet<String>> {
    let attributes: BTreeMap<String, String> = serde_json::from_str(attributes_json).ok()?;
    let hashes: BTreeSet<String> = attributes
        .iter()
        .filter(|(k, v)| {
            attributes::parse_slot_target(k).is_some_and(|(_, field)| field == attributes::SHA256)
                && !v.is_empty()
        })
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .collect();
    (!hashes.is_empty()).then_some(hashes)
}

/// The artifacts of one module to offer a device. Modules without delta or dynamic bundles are
/// offered whole (exactly what hawkBit does). Otherwise one bundle is chosen — the first static
/// delta all of whose sources the device's slot holds (and, for a delta that recompresses zstd
/// frames, whose zstd version the device reported); else, for a device that reported its
/// slot, the dynamic bundle (plus its packs); else the full bundle; else (no full bundle) the
/// dynamic one — and the other bundles and packs are left out. Other files always stay.
pub fn offer<'a>(
    artifacts: &'a [Artifact],
    variants: &BTreeMap<i64, Variant>,
    device: &DeviceReport,
) -> Vec<&'a Artifact> {
    let slot_hashes = device.slot_hashes.as_ref();
    let full = Variant::full();
    let bundle = |a: &Artifact| -> Option<&Variant> {
        match variants.get(&a.id) {
            Some(v) => Some(v),
            None if a.filename.ends_with(".swu") => Some(&full),
            None => None,
        }
    };
    let bundles: Vec<(&Artifact, &Variant)> = artifacts
        .iter()
        .filter_map(|a| Some((a, bundle(a)?)))
        .collect();
    if bundles.iter().all(|(_, v)| v.variant == "full") {
        return artifacts.iter().collect();
    }
    let of_kind = |kind: &str| bundles.iter().find(|(_, v)| v.variant == kind).copied();
    let matching_delta = slot_hashes.and_then(|hashes| {
        bundles
            .iter()
            .find(|(_, v)| {
                v.variant == "delta"
                    && v.sources.iter().all(|s| hashes.contains(s))
                    && device.can_recompress(&v.zstd_frames)
            })
            .copied()
    });
    let chosen = matching_delta
        .or_else(|| slot_hashes.and_then(|_| of_kind("chunked")))
        .or_else(|| of_kind("full"))
        .or_else(|| of_kind("chunked"));
    let all_packs: BTreeSet<&str> = bundles
        .iter()
        .flat_map(|(_, v)| v.packs.iter().map(String::as_str))
        .collect();
    let chosen_packs: BTreeSet<&str> = chosen
        .iter()
        .flat_map(|(_, v)| v.packs.iter().map(String::as_str))
        .collect();
    artifacts
        .iter()
        .filter(|a| match bundle(a) {
            Some(_) => chosen.is_some_and(|(c, _)| c.id == a.id),
            None => {
                !all_packs.contains(a.filename.as_str())
                    || chosen_packs.contains(a.filename.as_str())
            }
        })
        .collect()
}

/// The artifacts of a module as management API JSON, each with its bundle `variant`
/// (`full` / `delta` / `chunked`, null for files that are not bundles), the `deltaSources` its
/// `keel-delta` images need and the `packs` its `keel-chunked` images read.
pub async fn artifacts_json(store: &Store, module_id: i64) -> Result<Value, sqlx::Error> {
    let artifacts = store.artifacts(module_id).await?;
    let variants = store.artifact_variants(module_id).await?;
    Ok(Value::Array(
        artifacts
            .iter()
            .map(|a| artifact_json(a, variants.get(&a.id)))
            .collect(),
    ))
}

/// One artifact as management API JSON (see [`artifacts_json`]).
pub fn artifact_json(artifact: &Artifact, variant: Option<&Variant>) -> Value {
    let mut value = json!(artifact);
    value["variant"] = json!(variant.map(|v| v.variant.as_str()));
    value["deltaSources"] = json!(variant.map_or(&[][..], |v| &v.sources[..]));
    value["packs"] = json!(variant.map_or(&[][..], |v| &v.packs[..]));
    value["zstdFrames"] = json!(variant.map_or(&[][..], |v| &v.zstd_frames[..]));
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(id: i64, filename: &str) -> Artifact {
        Artifact {
            id,
            module_id: 1,
            filename: filename.into(),
            sha256: String::new(),
            sha1: String::new(),
            md5: String::new(),
            size: 1,
            created_at: 0,
        }
    }

    fn variant(kind: &str, sources: &[&str], packs: &[&str]) -> Variant {
        Variant {
            variant: kind.into(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            packs: packs.iter().map(|s| s.to_string()).collect(),
            zstd_frames: Vec::new(),
        }
    }

    fn device(hashes: &[&str], zstd: Option<&str>) -> DeviceReport {
        DeviceReport {
            slot_hashes: Some(hashes.iter().map(|s| s.to_string()).collect()),
            zstd_version: zstd.map(str::to_string),
        }
    }

    fn names(offered: Vec<&Artifact>) -> Vec<&str> {
        offered.iter().map(|a| a.filename.as_str()).collect()
    }

    #[test]
    fn offers_delta_then_dynamic_then_full() {
        let artifacts = vec![
            artifact(1, "full.swu"),
            artifact(2, "from-v1.swu"),
            artifact(3, "from-v0.swu"),
            artifact(4, "dynamic.swu"),
            artifact(5, "rootfs.kpack"),
            artifact(6, "notes.txt"),
        ];
        let mut variants = BTreeMap::new();
        variants.insert(1, Variant::full());
        variants.insert(2, variant("delta", &["aa"], &[]));
        variants.insert(3, variant("delta", &["bb", "cc"], &[]));
        variants.insert(4, variant("chunked", &[], &["rootfs.kpack"]));
        let v1 = device(&["aa"], None);
        assert_eq!(
            names(offer(&artifacts, &variants, &v1)),
            ["from-v1.swu", "notes.txt"]
        );
        // Every source of a delta must be present.
        let partial = device(&["bb"], None);
        assert_eq!(
            names(offer(&artifacts, &variants, &partial)),
            ["dynamic.swu", "rootfs.kpack", "notes.txt"]
        );
        let v0 = device(&["bb", "cc", "dd"], None);
        assert_eq!(
            names(offer(&artifacts, &variants, &v0)),
            ["from-v0.swu", "notes.txt"]
        );
        assert_eq!(
            names(offer(&artifacts, &variants, &DeviceReport::default())),
            ["full.swu", "notes.txt"]
        );
        // Only full bundles: everything, as before.
        let plain = vec![artifact(1, "a.swu"), artifact(7, "b.swu")];
        assert_eq!(
            names(offer(&plain, &BTreeMap::new(), &DeviceReport::default())),
            ["a.swu", "b.swu"]
        );
    }

    #[test]
    fn framed_delta_only_for_the_same_zstd_version() {
        let artifacts = vec![
            artifact(1, "full.swu"),
            artifact(2, "framed.swu"),
            artifact(3, "dynamic.swu"),
            artifact(4, "rootfs.kpack"),
        ];
        let mut framed = variant("delta", &["aa"], &[]);
        framed.zstd_frames = vec!["10505".into()];
        let mut variants = BTreeMap::new();
        variants.insert(1, Variant::full());
        variants.insert(2, framed);
        variants.insert(3, variant("chunked", &[], &["rootfs.kpack"]));
        assert_eq!(
            names(offer(
                &artifacts,
                &variants,
                &device(&["aa"], Some("10505"))
            )),
            ["framed.swu"]
        );
        for other in [Some("10507"), None] {
            assert_eq!(
                names(offer(&artifacts, &variants, &device(&["aa"], other))),
                ["dynamic.swu", "rootfs.kpack"],
                "zstd {other:?}"
            );
        }
        // Without a dynamic bundle: the full one.
        variants.remove(&3);
        assert_eq!(
            names(offer(
                &artifacts[..2],
                &variants,
                &device(&["aa"], Some("10404"))
            )),
            ["full.swu"]
        );
    }

    #[test]
    fn device_report_reads_the_zstd_version() {
        let json = r#"{"keel.slot.rootfs.sha256":"ab","keel.delta.zstd":" 10505 "}"#;
        let report = DeviceReport::from_attributes(json);
        assert_eq!(report.zstd_version.as_deref(), Some("10505"));
        assert_eq!(
            DeviceReport::from_attributes(r#"{"keel.delta.zstd":""}"#).zstd_version,
            None
        );
    }

    #[test]
    fn classify_reads_zstd_frames() {
        let description = br#"software = { version = "2"; images: (
            { filename = "rootfs.img.kdelta"; type = "keel-delta";
              properties = { source-sha256 = "AA"; zstd-frames = "10505"; }; }
        ); }"#;
        let mut swu = Vec::new();
        let mut writer = keel_formats::swu::SwuWriter::new(&mut swu, 0);
        writer.write_description(description, None).unwrap();
        writer.finish().unwrap();
        let variant = classify(&swu).unwrap();
        assert_eq!(variant.variant, "delta");
        assert_eq!(variant.sources, ["aa"]);
        assert_eq!(variant.zstd_frames, ["10505"]);
    }

    #[test]
    fn reported_hashes_come_from_slot_attributes() {
        let json = r#"{"keel.slot":"A","keel.slot.rootfs.sha256":"AB","keel.slot.rootfs.size":"9","hwRevision":"2"}"#;
        assert_eq!(
            reported_slot_hashes(json),
            Some(BTreeSet::from(["ab".to_string()]))
        );
        assert_eq!(reported_slot_hashes(r#"{"hwRevision":"2"}"#), None);
        assert_eq!(reported_slot_hashes("not json"), None);
    }

    #[test]
    fn non_bundles_are_not_classified() {
        assert_eq!(classify(b"not a cpio archive"), None);
        assert_eq!(classify(b""), None);
    }
}
