//! Bundle variants do not disturb plain hawkBit clients: Debian's real `swupdate` (suricatta)
//! polls keel-server for a module that holds a full bundle, a static-delta bundle, a dynamic
//! (`keel-chunked`) bundle and its pack. swupdate reports no slot hashes, so it is offered only
//! the full bundle (SWUpdate would refuse the others: it has no handler for keel's image types,
//! and it installs every artifact of a chunk), installs it and reports success.

use crate::common;

use common::swupdate::{make_signer, messages, stop_group, suricatta};
use common::{random_bytes, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The release signer (made once: swupdate trusts `cert.pem`).
fn signer(dir: &Path) -> keel_sign::Signer {
    if !dir.join("cert.pem").exists() {
        make_signer(dir);
    }
    keel_sign::Signer::from_pem(
        &std::fs::read(dir.join("cert.pem")).unwrap(),
        &std::fs::read(dir.join("key.pem")).unwrap(),
    )
    .unwrap()
}

/// A signed bundle with one image entry (`entry`: type and properties lines) for `target`.
fn bundle(
    dir: &Path,
    name: &str,
    member: &str,
    data: &[u8],
    entry: &str,
    target: &Path,
) -> Vec<u8> {
    let work = dir.join(name);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join(member), data).unwrap();
    let manifest = format!(
        "[software]\nversion = \"2.0.0\"\nhardware-compatibility = [\"1.0\"]\n\n\
         [[software.images]]\nfilename = \"{member}\"\ndevice = \"{}\"\n{entry}",
        target.display()
    );
    let spec = keel_bundle::BundleSpec::from_manifest_str(&manifest, &work).unwrap();
    let options = keel_bundle::CreateOptions {
        signer: Some(signer(dir)),
        aes_key: None,
        source_date_epoch: None,
    };
    let mut out = Vec::new();
    keel_bundle::create(&spec, &options, &mut out).unwrap();
    out
}

async fn wait_for(
    mgmt: &common::Mgmt,
    action_id: i64,
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
            let log = std::fs::read_to_string(dir.join("swupdate.log")).unwrap_or_default();
            panic!("timed out: {action:#}\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_swupdate_gets_only_the_full_bundle_of_a_module_with_variants() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let dir = tempfile::Builder::new()
        .prefix("keel-swv")
        .tempdir_in("/tmp")
        .unwrap();
    let target = dir.path().join("target.img");
    std::fs::write(&target, b"").unwrap();
    let image = random_bytes(128 * 1024, 7);
    let full = bundle(
        dir.path(),
        "full",
        "image.bin",
        &image,
        "type = \"raw\"\n",
        &target,
    );
    let hash = |b: &[u8]| keel_delta::hex(&<sha2::Sha256 as sha2::Digest>::digest(b));
    let delta = bundle(
        dir.path(),
        "delta",
        "image.bin.kdelta",
        b"not applied by anyone in this test",
        &format!(
            "type = \"keel-delta\"\n[software.images.properties]\nsource-sha256 = \"{}\"\ntarget-sha256 = \"{}\"\n",
            hash(b"old"),
            hash(&image)
        ),
        &target,
    );
    let chunked = bundle(
        dir.path(),
        "chunked",
        "image.bin.kidx",
        b"index",
        &format!(
            "type = \"keel-chunked\"\n[software.images.properties]\ntarget-sha256 = \"{}\"\npack = \"image.bin.kpack\"\n",
            hash(&image)
        ),
        &target,
    );

    let token = mgmt.device("sw1", &[]).await;
    let (set, module) = mgmt
        .release("gateway-os", "2.0.0", "update.swu", full)
        .await;
    for (name, bytes) in [
        ("update-from-1.0.swu", delta),
        ("update-dynamic.swu", chunked),
        ("image.bin.kpack", b"pack bytes".to_vec()),
    ] {
        let response = mgmt
            .client
            .post(format!(
                "{}/rest/v1/softwaremodules/{module}/artifacts",
                mgmt.base
            ))
            .bearer_auth(mgmt.token.as_deref().unwrap())
            .query(&[("filename", name)])
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let listed = mgmt
        .ok(
            Method::GET,
            &format!("/rest/v1/softwaremodules/{module}/artifacts"),
            None,
        )
        .await;
    let variants: Vec<&Value> = listed["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["variant"])
        .collect();
    assert_eq!(
        variants,
        [
            &json!("full"),
            &json!("delta"),
            &json!("chunked"),
            &Value::Null
        ]
    );
    let action_id = mgmt
        .ok(
            Method::POST,
            "/rest/v1/targets/sw1/assignedDS",
            Some(json!({ "id": set })),
        )
        .await["id"]
        .as_i64()
        .unwrap();

    // What swupdate is offered: the full bundle only.
    let deployment: Value = reqwest::Client::new()
        .get(format!(
            "{}/default/controller/v1/sw1/deploymentBase/{action_id}",
            server.base
        ))
        .header("Authorization", format!("TargetToken {token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offered: Vec<&str> = deployment["deployment"]["chunks"][0]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["filename"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["update.swu"]);

    let child = suricatta(dir.path(), &server.base, &token, "");
    let installed = wait_for(&mgmt, action_id, dir.path(), |a| {
        messages(a).iter().any(|m| m == "All Chunks Installed.") || a["active"] == false
    })
    .await;
    stop_group(child);
    assert_eq!(installed["active"], true, "{installed:#}");
    assert_eq!(std::fs::read(&target).unwrap(), image);
    server.stop().await;
}
