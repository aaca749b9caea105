//! Our signatures accepted by the real SWUpdate (`swupdate -c -i x.swu -k cert.pem`): a hand-made .swu
//! (cpio "New CRC" of sw-description, sw-description.sig, image) signed with keel-sign.

use crate::common;

use common::*;
use keel_sign::Signer;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const IMAGE: &[u8] = b"keel test image payload\n";

fn sw_description() -> Vec<u8> {
    sw_description_for(IMAGE, "")
}

/// sw-description with one raw image whose stored bytes are `stored` (sha256 is over the bytes in the
/// cpio, i.e. the ciphertext for encrypted images: that is what swupdate 2022.12 checks).
fn sw_description_for(stored: &[u8], extra: &str) -> Vec<u8> {
    let hash = hex::encode(Sha256::digest(stored));
    format!(
        "software =\n{{\n\tversion = \"1.0.0\";\n\tdescription = \"keel-sign test\";\n\
         \thardware-compatibility: [ \"1.0\" ];\n\timages: (\n\t\t{{\n\t\t\tfilename = \"image.bin\";\n\
         \t\t\tdevice = \"/dev/null\";\n\t\t\ttype = \"raw\";\n{extra}\t\t\tsha256 = \"{hash}\";\n\t\t}}\n\t);\n}}\n"
    )
    .into_bytes()
}

/// Write a .swu in `dir` with the given signature; returns its path.
fn make_swu(dir: &Path, name: &str, description: &[u8], signature: &[u8]) -> std::path::PathBuf {
    make_swu_with(dir, name, description, signature, IMAGE)
}

fn make_swu_with(
    dir: &Path,
    name: &str,
    description: &[u8],
    signature: &[u8],
    image: &[u8],
) -> std::path::PathBuf {
    let work = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("sw-description"), description).unwrap();
    std::fs::write(work.join("sw-description.sig"), signature).unwrap();
    std::fs::write(work.join("image.bin"), image).unwrap();
    let swu = dir.join(format!("{name}.swu"));
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "crc", "--quiet"])
        .current_dir(&work)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&swu).unwrap())
        .spawn()
        .expect("cpio must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sw-description\nsw-description.sig\nimage.bin\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    swu
}

/// Run `swupdate -c` (check only) on `swu` with trust file `key`; returns (accepted, log).
///
/// swupdate 2022.12 sometimes aborts a check half-way on a loaded machine: its SIGCHLD handler
/// (core/pctl.c) reacts to the chunks_downloader helper exiting, the main process ends and takes
/// the extracted sw-description.sig with it ("... cannot be opened", or a half-read file that
/// "cannot be parsed as DER"), or exits 1 with no verdict at all. Such a run says nothing about
/// our signature, so it is repeated; a verdict (accepted, or refused for a stated reason) is final.
fn swupdate_check(dir: &Path, swu: &Path, key: &Path, extra: &[&str]) -> (bool, String) {
    let mut logs = String::new();
    for attempt in 1..=5 {
        let (accepted, log) = swupdate_check_once(dir, swu, key, extra);
        let aborted = !accepted
            && (log.contains("sw-description.sig cannot be opened")
                || log.contains("cannot be parsed as DER-encoded CMS signature blob")
                || !log.contains("[ERROR]"));
        if !aborted {
            return (accepted, log);
        }
        logs.push_str(&format!(
            "--- attempt {attempt}: aborted, no verdict ---\n{log}\n"
        ));
    }
    (false, logs)
}

fn swupdate_check_once(dir: &Path, swu: &Path, key: &Path, extra: &[&str]) -> (bool, String) {
    // Own TMPDIR: swupdate puts its control sockets there; parallel runs must not share them.
    let tmp = tempfile::tempdir_in(dir).unwrap();
    let out = Command::new("swupdate")
        .args(["-c", "-v", "-H", "keel:1.0", "-i"])
        .arg(swu)
        .arg("-k")
        .arg(key)
        .args(extra)
        .env("TMPDIR", tmp.path())
        .output()
        .expect("swupdate must be installed (apt-get install swupdate)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = format!("exit status {}\n{log}", out.status);
    // Judged by the log, not the exit status (see above).
    let accepted = log.contains("Verified OK")
        && log.contains("SWUPDATE successful")
        && !log.contains("SWUpdate *failed*");
    (accepted, log)
}

#[test]
fn swupdate_accepts_our_signatures() {
    let pki = Pki::new();
    let desc = sw_description();
    let root = pki.self_signed("swu-root", KeyKind::Rsa3072, EXT_CA, 60);
    let cases = [
        (
            "rsa-self",
            pki.self_signed("swu-rsa", KeyKind::Rsa2048, EXT_SIGNER, 30),
            None,
        ),
        (
            "p256-self",
            pki.self_signed("swu-p256", KeyKind::P256, EXT_SIGNER, 30),
            None,
        ),
        (
            "p384-chain",
            pki.issue("swu-p384", KeyKind::P384, &root, EXT_SIGNER, 30),
            Some(&root),
        ),
        (
            "rsa3072-chain",
            pki.issue("swu-rsa3072", KeyKind::Rsa3072, &root, EXT_SIGNER, 30),
            Some(&root),
        ),
    ];
    for (name, id, ca) in &cases {
        let signer = Signer::from_pem(&id.cert_pem(), &id.key_pem()).unwrap();
        let trust = ca
            .map(|c| c.cert.clone())
            .unwrap_or_else(|| id.cert.clone());
        for time in [None, Some(now_unix())] {
            let sig = signer.sign_detached(&desc, time).unwrap();
            let swu = make_swu(pki.dir(), name, &desc, &sig);
            let (ok, log) = swupdate_check(pki.dir(), &swu, &trust, &[]);
            assert!(ok, "{name}: swupdate rejected our signature:\n{log}");
        }
        // Sanity: swupdate really checks — a one-byte change of sw-description is refused.
        let sig = signer.sign_detached(&desc, None).unwrap();
        let mut tampered = desc.clone();
        tampered.extend_from_slice(b"\n");
        let swu = make_swu(pki.dir(), &format!("{name}-tampered"), &tampered, &sig);
        let (ok, log) = swupdate_check(pki.dir(), &swu, &trust, &[]);
        assert!(
            !ok && log.contains("Signature verification failed"),
            "{name}: tampered accepted:\n{log}"
        );
    }
}

#[test]
fn swupdate_cert_purpose_matches_ours() {
    let pki = Pki::new();
    let desc = sw_description();
    let code = pki.self_signed("swu-code", KeyKind::P256, EXT_SIGNER_CODESIGN, 30);
    let sig = Signer::from_pem(&code.cert_pem(), &code.key_pem())
        .unwrap()
        .sign_detached(&desc, None)
        .unwrap();
    let swu = make_swu(pki.dir(), "code", &desc, &sig);
    // Default purpose (emailProtection): both swupdate and keel refuse a codeSigning-only certificate.
    let (ok, log) = swupdate_check(pki.dir(), &swu, &code.cert, &[]);
    assert!(
        !ok,
        "swupdate accepted a codeSigning cert under emailProtection:\n{log}"
    );
    let ours = keel_sign::Verifier::from_pem(&code.cert_pem())
        .unwrap()
        .verify_detached(&desc, &sig);
    assert!(ours.is_err());
    // --cert-purpose codeSigning: both accept.
    let (ok, log) = swupdate_check(
        pki.dir(),
        &swu,
        &code.cert,
        &["--cert-purpose", "codeSigning"],
    );
    assert!(ok, "swupdate --cert-purpose codeSigning rejected:\n{log}");
    keel_sign::Verifier::from_pem(&code.cert_pem())
        .unwrap()
        .with_purpose(keel_sign::CertPurpose::CodeSigning)
        .verify_detached(&desc, &sig)
        .unwrap();
}

#[test]
fn swupdate_decrypts_our_encryption() {
    use keel_sign::aes::{AesKey, EncryptWriter};
    let pki = Pki::new();
    let id = pki.self_signed("swu-enc", KeyKind::P256, EXT_SIGNER, 30);
    let signer = Signer::from_pem(&id.cert_pem(), &id.key_pem()).unwrap();
    let plain: Vec<u8> = (0..70_001u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let key = AesKey {
        key: std::array::from_fn(|i| i as u8 ^ 0x5a),
        iv: std::array::from_fn(|i| (i as u8) << 3),
    };
    let mut enc = EncryptWriter::new(Vec::new(), &key.key, &key.iv);
    enc.write_all(&plain).unwrap();
    let cipher = enc.finish().unwrap();
    let desc = sw_description_for(&cipher, "\t\t\tencrypted = true;\n");
    let sig = signer.sign_detached(&desc, None).unwrap();
    let swu = make_swu_with(pki.dir(), "enc", &desc, &sig, &cipher);

    let keyfile = pki.write("aes.key", key.to_keyfile().as_bytes());
    let keyfile_arg = keyfile.to_str().unwrap();
    let (ok, log) = swupdate_check(pki.dir(), &swu, &id.cert, &["-K", keyfile_arg]);
    assert!(ok, "swupdate could not decrypt our image:\n{log}");

    // With another key swupdate's decryption fails on the padding: it really decrypts in check mode.
    let mut wrong = key.clone();
    wrong.key[7] ^= 1;
    let wrong_file = pki.write("wrong.key", wrong.to_keyfile().as_bytes());
    let (ok, log) = swupdate_check(
        pki.dir(),
        &swu,
        &id.cert,
        &["-K", wrong_file.to_str().unwrap()],
    );
    assert!(
        !ok && log.contains("Decryption error"),
        "wrong key accepted:\n{log}"
    );
}

#[test]
fn forced_signer_name_matches_swupdate() {
    let pki = Pki::new();
    let desc = sw_description();
    let id = pki.self_signed("release-signer", KeyKind::P256, EXT_SIGNER, 30);
    let sig = Signer::from_pem(&id.cert_pem(), &id.key_pem())
        .unwrap()
        .sign_detached(&desc, None)
        .unwrap();
    let swu = make_swu(pki.dir(), "named", &desc, &sig);
    for (name, expect_ok) in [
        ("release-signer", true),
        ("release", false),
        ("other", false),
    ] {
        let (ok, log) = swupdate_check(pki.dir(), &swu, &id.cert, &["--forced-signer-name", name]);
        assert_eq!(
            ok, expect_ok,
            "swupdate --forced-signer-name {name}:\n{log}"
        );
        let ours = keel_sign::Verifier::from_pem(&id.cert_pem())
            .unwrap()
            .with_signer_name(Some(name.to_string()))
            .verify_detached(&desc, &sig);
        assert_eq!(
            ours.is_ok(),
            expect_ok,
            "keel with_signer_name {name}: {ours:?}"
        );
        if let Err(e) = ours {
            assert!(
                e.to_string()
                    .contains("does not have the required common name"),
                "{e}"
            );
        }
    }
}
