//! Debian's real `swupdate` in suricatta (hawkBit) mode against keel-server: it polls, downloads
//! and installs a signed .swu to a file target, then (restarted with `-c 2`, as after a reboot)
//! reports the result of the action that was open before; the action ends finished on the server.
//!
//! Two bundles are used: one made by keel-bundle (`keel bundle create`'s library), and one made
//! the way SWUpdate documents it (`cpio -H crc` of sw-description, its CMS signature from
//! `openssl cms -sign -binary -outform DER -nosmimecap`, and the image) as a cross-check.

use crate::common;

use common::swupdate::{make_signer, messages, run, stop_group, suricatta};
use common::{random_bytes, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A signed keel bundle (keel-bundle) whose single raw image is written to `target`.
fn make_keel_bundle(dir: &Path, image: &[u8], target: &Path) -> Vec<u8> {
    let work = dir.join("bundle");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("image.bin"), image).unwrap();
    let manifest = format!(
        "[software]\nversion = \"2.0.0\"\ndescription = \"keel-server suricatta test\"\nhardware-compatibility = [\"1.0\"]\n\n\
         [[software.images]]\nfilename = \"image.bin\"\ndevice = \"{}\"\ntype = \"raw\"\n",
        target.display()
    );
    let spec = keel_bundle::BundleSpec::from_manifest_str(&manifest, &work).unwrap();
    let signer = keel_sign::Signer::from_pem(
        &std::fs::read(dir.join("cert.pem")).unwrap(),
        &std::fs::read(dir.join("key.pem")).unwrap(),
    )
    .unwrap();
    let options = keel_bundle::CreateOptions {
        signer: Some(signer),
        aes_key: None,
        source_date_epoch: None,
    };
    let mut out = Vec::new();
    keel_bundle::create(&spec, &options, &mut out).unwrap();
    out
}

/// A signed .swu made with cpio and openssl whose single raw image is written to `target`.
fn make_swu(dir: &Path, image: &[u8], target: &Path) -> Vec<u8> {
    std::fs::write(dir.join("image.bin"), image).unwrap();
    let sw_description = format!(
        r#"software =
{{
	version = "2.0.0";
	description = "keel-server suricatta test";
	hardware-compatibility: [ "1.0" ];
	images: (
		{{
			filename = "image.bin";
			device = "{}";
			type = "raw";
			sha256 = "{}";
		}}
	);
}}
"#,
        target.display(),
        hex::encode(Sha256::digest(image))
    );
    std::fs::write(dir.join("sw-description"), sw_description).unwrap();
    common::swupdate::make_signer(dir);
    run(Command::new("openssl")
        .args([
            "cms",
            "-sign",
            "-in",
            "sw-description",
            "-out",
            "sw-description.sig",
            "-signer",
            "cert.pem",
        ])
        .args([
            "-inkey",
            "key.pem",
            "-outform",
            "DER",
            "-nosmimecap",
            "-binary",
        ])
        .current_dir(dir));
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "crc", "-O", "update.swu"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cpio");
    use std::io::Write;
    cpio.stdin
        .take()
        .unwrap()
        .write_all(b"sw-description\nsw-description.sig\nimage.bin\n")
        .unwrap();
    assert!(cpio.wait().unwrap().success());
    std::fs::read(dir.join("update.swu")).unwrap()
}

async fn wait_for(
    mgmt: &common::Mgmt,
    action_id: i64,
    what: &str,
    dir: &Path,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let action = mgmt.action("sw1", action_id).await;
        if check(&action) {
            return action;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect();
            panic!(
                "timed out waiting for {what}: {action:#}\n{}",
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn install_with_real_swupdate(keel_bundle: bool) {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    // Short path: swupdate puts its unix sockets in TMPDIR.
    let dir = tempfile::Builder::new()
        .prefix("keel-swu")
        .tempdir_in("/tmp")
        .unwrap();
    let target = dir.path().join("target.img");
    std::fs::write(&target, b"").unwrap();
    let image = random_bytes(256 * 1024, 42);
    make_signer(dir.path());
    let swu = if keel_bundle {
        make_keel_bundle(dir.path(), &image, &target)
    } else {
        make_swu(dir.path(), &image, &target)
    };

    let token = mgmt.device("sw1", &[]).await;
    let (set, _) = mgmt.release("gateway-os", "2.0.0", "update.swu", swu).await;
    let action = mgmt
        .ok(
            Method::POST,
            "/rest/v1/targets/sw1/assignedDS",
            Some(json!({ "id": set })),
        )
        .await;
    let action_id = action["id"].as_i64().unwrap();

    // 1. swupdate polls, downloads (verifying sha1), checks the CMS signature, writes the image,
    //    and reports "All Chunks Installed." (proceeding): the action stays open until the reboot.
    let child = suricatta(dir.path(), &server.base, &token, "");
    let installed = wait_for(&mgmt, action_id, "installation", dir.path(), |a| {
        messages(a).iter().any(|m| m == "All Chunks Installed.")
    })
    .await;
    stop_group(child);
    assert_eq!(installed["active"], true);
    assert_eq!(
        std::fs::read(&target).unwrap(),
        image,
        "target holds the image"
    );

    // 2. "After the reboot": swupdate -c 2 (state TESTING) reports closed+success for the open action.
    let child = suricatta(dir.path(), &server.base, &token, "-c 2");
    let done = wait_for(&mgmt, action_id, "final result", dir.path(), |a| {
        a["active"] == false
    })
    .await;
    stop_group(child);
    assert_eq!(done["status"], "finished");
    assert!(messages(&done).iter().any(|m| m == "Update Installed."));
    let device = mgmt.ok(Method::GET, "/rest/v1/targets/sw1", None).await;
    assert_eq!(device["updateStatus"], "in_sync");
    assert_eq!(device["installedDistributionSetId"], json!(set));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_swupdate_suricatta_installs_a_keel_bundle_and_reports_after_reboot() {
    install_with_real_swupdate(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_swupdate_suricatta_installs_a_cpio_openssl_swu() {
    install_with_real_swupdate(false).await;
}
