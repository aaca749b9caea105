//! keel-agent's install pipeline on arbitrary, validly signed bundles: the input is split into a
//! sw-description and member data, the description is signed with a fuzz-only key the simulated
//! device trusts, and the bundle is installed on a keel-sim device (EBG, U-Boot or GRUB).
//! Whatever the description says, the agent must not panic, must never write the booted slot,
//! and the device must boot a slot afterwards. Descriptions with scripts are skipped (they
//! would run shell code).

#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use keel_agent::config::Detect;
use keel_agent::{InstallOptions, SlotId};
use keel_sim::{DeviceSpec, Loader, SimDevice};
use libfuzzer_sys::fuzz_target;

// A throw-away key pair made for this target only.
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgHxTUi3egTc+CxOFs\ndTTO+js5t46ezY0Q7FKsdgcf3DKhRANCAASICFZ2n2Ufa7dKny/vZk/jByL5f88j\nZhVA8sB11OgWXPIK+BT7lTYY5S1WyZoJbAjI7z9gV//ZkixMY8JpC6Bl\n-----END PRIVATE KEY-----";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBfjCCASWgAwIBAgIUMgfP49o5uvNpN0roLnfN3gVWMKwwCgYIKoZIzj0EAwIw\nFDESMBAGA1UEAwwJa2VlbC1mdXp6MCAXDTI2MTEyMzEwNDc1NFoYDzIxMjYxMDMw\nMTA0NzU0WjAUMRIwEAYDVQQDDAlrZWVsLWZ1enowWTATBgcqhkjOPQIBBggqhkjO\nPQMBBwNCAASICFZ2n2Ufa7dKny/vZk/jByL5f88jZhVA8sB11OgWXPIK+BT7lTYY\n5S1WyZoJbAjI7z9gV//ZkixMY8JpC6Blo1MwUTAdBgNVHQ4EFgQUHDVeCVJUxruF\nehL2Urf1VjqagLswHwYDVR0jBBgwFoAUHDVeCVJUxruFehL2Urf1VjqagLswDwYD\nVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAEAaXDZ2SXJ7oZ1v9Vtdvb\nLqYeEg8HhZXUeR0l8Gn/zAIgex9DOakgY2R2wmmQFasnayY7d/Nju7TTLtYEnmL/\nX0Q=\n-----END CERTIFICATE-----";

fn cert_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("keel-fuzz-agent-{}.pem", std::process::id()));
        std::fs::write(&path, CERT).expect("temp dir writable");
        path
    })
}

fn signer() -> &'static keel_sign::Signer {
    static SIGNER: OnceLock<keel_sign::Signer> = OnceLock::new();
    SIGNER.get_or_init(|| keel_sign::Signer::from_pem(CERT.as_bytes(), KEY.as_bytes()).expect("fuzz key"))
}

fuzz_target!(|data: &[u8]| {
    let [selector, len_hi, len_lo, rest @ ..] = data else { return };
    let desc_len = usize::from(u16::from_be_bytes([*len_hi, *len_lo])).min(rest.len());
    let (description, payload) = rest.split_at(desc_len);
    if description.windows(7).any(|w| w.eq_ignore_ascii_case(b"scripts")) {
        return;
    }
    let Ok(signature) = signer().sign_detached(description, None) else { return };
    let mut bundle = Vec::new();
    {
        let mut writer = keel_formats::swu::SwuWriter::new(&mut bundle, 0);
        if writer.write_description(description, Some(&signature)).is_err() {
            return;
        }
        let third = payload.len() / 3;
        for (name, chunk) in [("a", &payload[..third]), ("b", &payload[third..2 * third]), ("c", &payload[2 * third..])] {
            if writer.append_image_bytes(name, chunk).is_err() {
                return;
            }
        }
        if writer.finish().is_err() {
            return;
        }
    }
    let loader = match selector % 3 {
        0 => Loader::Ebg,
        1 => Loader::Uboot,
        _ => Loader::Grub,
    };
    let mut factory = BTreeMap::new();
    factory.insert("rootfs".to_string(), vec![0xA5; 4096]);
    let spec = DeviceSpec {
        loader,
        targets: vec![("rootfs".into(), 16 * 1024), ("kernel".into(), 8 * 1024)],
        factory,
        trusted_certs: cert_path().clone(),
        aes_key: None,
        hardware_revision: None,
        detect: Detect::Auto,
    };
    let mut device = SimDevice::new(spec).expect("device");
    let before = device.slot_contents(SlotId::A, "rootfs");
    let _ = device.agent().expect("agent").install(&bundle[..], InstallOptions { chunk_size: Some(4096), ..Default::default() });
    assert_eq!(device.slot_contents(SlotId::A, "rootfs"), before, "the booted slot was written");
    device.boot().expect("the device must boot a slot");
});
