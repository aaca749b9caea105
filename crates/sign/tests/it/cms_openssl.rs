//! CMS signatures cross-checked with the real `openssl cms` (what SWUpdate uses for `-k`).

use crate::common;

use common::*;
use keel_sign::{CertPurpose, Signer, Verifier, VerifyError};

const CONTENT: &[u8] =
    b"software = { version = \"1.0.0\"; };\n\x00\xff binary bytes \r\n kept as is";

/// Our signature (with and without signingTime) verifies with `openssl cms -verify -purpose smimesign`
/// and with our own Verifier, for `signer` trusted via `trust` (a PEM file).
fn check_ours_with_openssl(
    pki: &Pki,
    signer: &Signer,
    trust: &std::path::Path,
    expect_subject: &str,
    tag: &str,
) {
    let content = pki.write(&format!("{tag}.content"), CONTENT);
    for signing_time in [None, Some(now_unix())] {
        let sig = signer.sign_detached(CONTENT, signing_time).unwrap();
        let sig_path = pki.write(&format!("{tag}.sig"), &sig);
        let (ok, err) = pki.openssl_verify(&content, &sig_path, trust, "smimesign");
        assert!(
            ok,
            "{tag} (signing_time {signing_time:?}): openssl rejected our signature: {err}"
        );
        let info = Verifier::from_pem(&std::fs::read(trust).unwrap())
            .unwrap()
            .at_time(Some(now_unix()))
            .verify_detached(CONTENT, &sig)
            .unwrap_or_else(|e| panic!("{tag}: our verifier rejected our signature: {e}"));
        assert_eq!(info.subject, expect_subject, "{tag}");
        assert_eq!(info.digest_algorithm, "sha256");
    }
}

#[test]
fn our_signatures_verify_with_openssl_self_signed() {
    let pki = Pki::new();
    for kind in KeyKind::ALL {
        let name = format!("self-{kind:?}");
        let id = pki.self_signed(&name, kind, EXT_SIGNER, 30);
        let signer = Signer::from_pem(&id.cert_pem(), &id.key_pem()).unwrap();
        check_ours_with_openssl(&pki, &signer, &id.cert, &id.subject, &name);
    }
}

#[test]
fn our_signatures_verify_with_openssl_ca_chain() {
    let pki = Pki::new();
    let root = pki.self_signed("root-ca", KeyKind::P384, EXT_CA, 60);
    for kind in KeyKind::ALL {
        // root CA -> signer
        let name = format!("leaf-{kind:?}");
        let id = pki.issue(&name, kind, &root, EXT_SIGNER, 30);
        let signer = Signer::from_pem(&id.cert_pem(), &id.key_pem()).unwrap();
        check_ours_with_openssl(&pki, &signer, &root.cert, &id.subject, &name);
    }
    // root CA -> intermediate CA -> signer, the intermediate travels in the signature.
    let intermediate = pki.issue("intermediate-ca", KeyKind::Rsa2048, &root, EXT_CA, 60);
    let leaf = pki.issue("deep-leaf", KeyKind::P256, &intermediate, EXT_SIGNER, 30);
    let mut chain_pem = leaf.cert_pem();
    chain_pem.extend(intermediate.cert_pem());
    let signer = Signer::from_pem(&chain_pem, &leaf.key_pem()).unwrap();
    check_ours_with_openssl(&pki, &signer, &root.cert, &leaf.subject, "deep");
    // Without the intermediate neither openssl nor we can build the chain.
    let lonely = Signer::from_pem(&leaf.cert_pem(), &leaf.key_pem()).unwrap();
    let sig = lonely.sign_detached(CONTENT, None).unwrap();
    let err = Verifier::from_pem(&root.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &sig)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Untrusted { .. }), "{err}");
    let (ok, _) = pki.openssl_verify(
        &pki.write("c", CONTENT),
        &pki.write("lonely.sig", &sig),
        &root.cert,
        "smimesign",
    );
    assert!(!ok, "openssl must not find the intermediate either");
}

#[test]
fn traditional_key_formats_load() {
    let pki = Pki::new();
    let rsa = pki.self_signed("rsa-trad", KeyKind::Rsa2048, EXT_SIGNER, 30);
    openssl(
        pki.dir(),
        &[
            "rsa",
            "-in",
            "rsa-trad.key",
            "-traditional",
            "-out",
            "rsa-pkcs1.key",
        ],
    );
    let pkcs1 = std::fs::read(pki.path("rsa-pkcs1.key")).unwrap();
    assert!(String::from_utf8_lossy(&pkcs1).contains("BEGIN RSA PRIVATE KEY"));
    let ec = pki.self_signed("ec-trad", KeyKind::P256, EXT_SIGNER, 30);
    openssl(
        pki.dir(),
        &["ec", "-in", "ec-trad.key", "-out", "ec-sec1.key"],
    );
    let sec1 = std::fs::read(pki.path("ec-sec1.key")).unwrap();
    assert!(String::from_utf8_lossy(&sec1).contains("BEGIN EC PRIVATE KEY"));
    // `openssl ecparam -genkey` style: EC PARAMETERS block then the key.
    let mut with_params = openssl(pki.dir(), &["ecparam", "-name", "prime256v1"]).stdout;
    with_params.extend(&sec1);

    for (id, key, tag) in [
        (&rsa, pkcs1, "pkcs1"),
        (&ec, sec1, "sec1"),
        (&ec, with_params, "ecparams"),
    ] {
        let signer =
            Signer::from_pem(&id.cert_pem(), &key).unwrap_or_else(|e| panic!("{tag}: {e}"));
        check_ours_with_openssl(&pki, &signer, &id.cert, &id.subject, tag);
    }

    // A key that does not belong to the certificate is refused.
    let err = Signer::from_pem(&rsa.cert_pem(), &ec.key_pem()).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn openssl_signatures_verify_with_ours() {
    let pki = Pki::new();
    let content = pki.write("content", CONTENT);
    let root = pki.self_signed("root", KeyKind::Rsa3072, EXT_CA, 60);
    for kind in KeyKind::ALL {
        let self_signed = pki.self_signed(&format!("os-self-{kind:?}"), kind, EXT_SIGNER, 30);
        let issued = pki.issue(&format!("os-leaf-{kind:?}"), kind, &root, EXT_SIGNER, 30);
        for (id, trust) in [(&self_signed, &self_signed), (&issued, &root)] {
            for extra in [
                &[][..],
                &["-noattr"][..],
                &["-keyid"][..],
                &["-md", "sha384"][..],
                &["-md", "sha512"][..],
            ] {
                let mut args = vec![
                    "cms",
                    "-sign",
                    "-binary",
                    "-outform",
                    "DER",
                    "-nosmimecap",
                    "-in",
                    "content",
                    "-signer",
                    id.cert.to_str().unwrap(),
                    "-inkey",
                    id.key.to_str().unwrap(),
                    "-out",
                    "openssl.sig",
                ];
                args.extend(extra);
                openssl(pki.dir(), &args);
                let sig = std::fs::read(pki.path("openssl.sig")).unwrap();
                let info = Verifier::from_pem(&trust.cert_pem())
                    .unwrap()
                    .at_time(Some(now_unix()))
                    .verify_detached(CONTENT, &sig)
                    .unwrap_or_else(|e| panic!("{kind:?} {extra:?} trust {}: {e}", trust.subject));
                assert_eq!(info.subject, id.subject);
                let expected_digest = extra
                    .get(1)
                    .copied()
                    .filter(|_| extra[0] == "-md")
                    .unwrap_or("sha256");
                assert_eq!(info.digest_algorithm, expected_digest);
                assert_eq!(
                    info.signature_algorithm.starts_with("ecdsa"),
                    !kind.is_rsa(),
                    "{}",
                    info.signature_algorithm
                );
                // The serial openssl reports is what we report.
                let serial = openssl(
                    pki.dir(),
                    &[
                        "x509",
                        "-in",
                        id.cert.to_str().unwrap(),
                        "-noout",
                        "-serial",
                    ],
                );
                let serial = String::from_utf8_lossy(&serial.stdout)
                    .trim()
                    .trim_start_matches("serial=")
                    .to_lowercase();
                assert_eq!(
                    info.serial_hex.trim_start_matches("00"),
                    serial.trim_start_matches("00")
                );
                assert!(Verifier::from_pem(&trust.cert_pem())
                    .unwrap()
                    .verify_detached(b"other", &sig)
                    .is_err());
            }
        }
        let _ = &content;
    }
}

#[test]
fn signatures_are_deterministic() {
    let pki = Pki::new();
    for kind in KeyKind::ALL {
        let id = pki.self_signed(&format!("det-{kind:?}"), kind, EXT_SIGNER, 30);
        let signer = Signer::from_pem(&id.cert_pem(), &id.key_pem()).unwrap();
        for time in [
            None,
            Some(1_700_000_000),
            Some(4_102_444_800 /* 2100: GeneralizedTime */),
        ] {
            let a = signer.sign_detached(CONTENT, time).unwrap();
            let b = signer.sign_detached(CONTENT, time).unwrap();
            assert_eq!(a, b, "{kind:?} {time:?}");
            Verifier::from_pem(&id.cert_pem())
                .unwrap()
                .verify_detached(CONTENT, &a)
                .unwrap();
        }
        let with_time = signer.sign_detached(CONTENT, Some(1)).unwrap();
        assert_ne!(with_time, signer.sign_detached(CONTENT, None).unwrap());
    }
}

fn flip(mut bytes: Vec<u8>, index: usize) -> Vec<u8> {
    bytes[index] ^= 0x01;
    bytes
}

#[test]
fn rejections_have_clear_errors() {
    let pki = Pki::new();
    let id = pki.self_signed("signer", KeyKind::Rsa2048, EXT_SIGNER, 30);
    let signer = Signer::from_pem(&id.cert_pem(), &id.key_pem()).unwrap();
    let verifier = Verifier::from_pem(&id.cert_pem()).unwrap();
    let sig = signer.sign_detached(CONTENT, Some(now_unix())).unwrap();
    verifier.verify_detached(CONTENT, &sig).unwrap();

    // Flipped content byte.
    let bad_content = flip(CONTENT.to_vec(), 3);
    let err = verifier.verify_detached(&bad_content, &sig).unwrap_err();
    assert!(matches!(err, VerifyError::DigestMismatch), "{err}");
    assert!(
        err.to_string().contains("signature does not match content"),
        "{err}"
    );

    // Flipped signature byte (the signature value is the last field of our SignerInfo).
    let err = verifier
        .verify_detached(CONTENT, &flip(sig.clone(), sig.len() - 5))
        .unwrap_err();
    assert!(matches!(err, VerifyError::SignatureMismatch), "{err}");
    assert_eq!(err.to_string(), "signature does not match content");

    // Same without signed attributes (openssl -noattr): a content flip is a signature mismatch.
    let content_path = pki.write("content", CONTENT);
    openssl(
        pki.dir(),
        &[
            "cms",
            "-sign",
            "-binary",
            "-outform",
            "DER",
            "-nosmimecap",
            "-noattr",
            "-in",
            "content",
            "-signer",
            "signer.pem",
            "-inkey",
            "signer.key",
            "-out",
            "noattr.sig",
        ],
    );
    let noattr = std::fs::read(pki.path("noattr.sig")).unwrap();
    let err = verifier.verify_detached(&bad_content, &noattr).unwrap_err();
    assert!(matches!(err, VerifyError::SignatureMismatch), "{err}");

    // Wrong trusted certificate (another self-signed cert).
    let other = pki.self_signed("other", KeyKind::P256, EXT_SIGNER, 30);
    let err = Verifier::from_pem(&other.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &sig)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Untrusted { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("signer certificate not trusted: issuer CN=signer"),
        "{err}"
    );
    let (ok, _) = pki.openssl_verify(
        &content_path,
        &pki.write("s.sig", &sig),
        &other.cert,
        "smimesign",
    );
    assert!(!ok);

    // Untrusted CA: signer issued by CA A, trust store has CA B.
    let ca_a = pki.self_signed("ca-a", KeyKind::P256, EXT_CA, 60);
    let ca_b = pki.self_signed("ca-b", KeyKind::P256, EXT_CA, 60);
    let leaf = pki.issue("leaf-of-a", KeyKind::P256, &ca_a, EXT_SIGNER, 30);
    let leaf_sig = Signer::from_pem(&leaf.cert_pem(), &leaf.key_pem())
        .unwrap()
        .sign_detached(CONTENT, None)
        .unwrap();
    let err = Verifier::from_pem(&ca_b.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &leaf_sig)
        .unwrap_err();
    assert!(
        err.to_string().contains("not trusted: issuer CN=ca-a"),
        "{err}"
    );
    Verifier::from_pem(&[ca_b.cert_pem(), ca_a.cert_pem()].concat())
        .unwrap()
        .verify_detached(CONTENT, &leaf_sig)
        .unwrap();

    // Impostor CA: same name as the real CA, different key -> the link's signature fails.
    let impostor_dir = Pki::new();
    let impostor = impostor_dir.self_signed("ca-a", KeyKind::P256, EXT_CA, 60);
    let err = Verifier::from_pem(&impostor.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &leaf_sig)
        .unwrap_err();
    assert!(matches!(err, VerifyError::ChainSignature { .. }), "{err}");

    // Expired / not yet valid, only when at_time is set (also for the CA).
    let in_100_days = now_unix() + 100 * 86400;
    let err = verifier
        .clone()
        .at_time(Some(in_100_days))
        .verify_detached(CONTENT, &sig)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("certificate expired: CN=signer"),
        "{err}"
    );
    let err = verifier
        .clone()
        .at_time(Some(now_unix() - 86400))
        .verify_detached(CONTENT, &sig)
        .unwrap_err();
    assert!(matches!(err, VerifyError::NotYetValid { .. }), "{err}");
    let err = Verifier::from_pem(&ca_a.cert_pem())
        .unwrap()
        .at_time(Some(now_unix() + 45 * 86400)) // leaf (30 days) expired, CA (60 days) not
        .verify_detached(CONTENT, &leaf_sig)
        .unwrap_err();
    assert!(err.to_string().contains("CN=leaf-of-a"), "{err}");

    // Wrong extendedKeyUsage: codeSigning certificate under the default (emailProtection) purpose.
    let code = pki.self_signed("codesigner", KeyKind::Rsa2048, EXT_SIGNER_CODESIGN, 30);
    let code_sig = Signer::from_pem(&code.cert_pem(), &code.key_pem())
        .unwrap()
        .sign_detached(CONTENT, None)
        .unwrap();
    let err = Verifier::from_pem(&code.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &code_sig)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "certificate CN=codesigner,O=keel test lacks extendedKeyUsage emailProtection"
    );
    let (ok, _) = pki.openssl_verify(
        &content_path,
        &pki.write("code.sig", &code_sig),
        &code.cert,
        "smimesign",
    );
    assert!(
        !ok,
        "openssl smimesign must reject a codeSigning-only certificate too"
    );
    // ... accepted with the codeSigning purpose (swupdate --cert-purpose codeSigning) and with Any.
    for purpose in [CertPurpose::CodeSigning, CertPurpose::Any] {
        Verifier::from_pem(&code.cert_pem())
            .unwrap()
            .with_purpose(purpose)
            .verify_detached(CONTENT, &code_sig)
            .unwrap();
    }
    // ... and an emailProtection cert fails the codeSigning purpose.
    let err = verifier
        .clone()
        .with_purpose(CertPurpose::CodeSigning)
        .verify_detached(CONTENT, &sig)
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("lacks extendedKeyUsage codeSigning"),
        "{err}"
    );

    // keyUsage without digitalSignature.
    let no_ds = pki.self_signed("nodigsig", KeyKind::P256, EXT_SIGNER_NO_DIGSIG, 30);
    let no_ds_sig = Signer::from_pem(&no_ds.cert_pem(), &no_ds.key_pem())
        .unwrap()
        .sign_detached(CONTENT, None)
        .unwrap();
    let err = Verifier::from_pem(&no_ds.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &no_ds_sig)
        .unwrap_err();
    assert!(matches!(err, VerifyError::KeyUsage { .. }), "{err}");
    assert!(
        err.to_string().contains("lacks keyUsage digitalSignature"),
        "{err}"
    );
    let (ok, _) = pki.openssl_verify(
        &content_path,
        &pki.write("nods.sig", &no_ds_sig),
        &no_ds.cert,
        "smimesign",
    );
    assert!(!ok, "openssl must reject it too");

    // An issuer that is not a CA cannot vouch for a signer.
    let not_ca = pki.self_signed("not-a-ca", KeyKind::P256, EXT_NOT_CA, 60);
    let under = pki.issue("under-not-ca", KeyKind::P256, &not_ca, EXT_SIGNER, 30);
    let under_sig = Signer::from_pem(&under.cert_pem(), &under.key_pem())
        .unwrap()
        .sign_detached(CONTENT, None)
        .unwrap();
    let err = Verifier::from_pem(&not_ca.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &under_sig)
        .unwrap_err();
    assert!(matches!(err, VerifyError::NotCa { .. }), "{err}");
    let (ok, _) = pki.openssl_verify(
        &content_path,
        &pki.write("under.sig", &under_sig),
        &not_ca.cert,
        "smimesign",
    );
    assert!(!ok, "openssl must reject it too");

    // Truncated and garbage DER.
    for (what, bytes) in [
        ("truncated", sig[..sig.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("garbage", b"definitely not DER".to_vec()),
        ("trailing", [sig.clone(), vec![0]].concat()),
    ] {
        let err = verifier.verify_detached(CONTENT, &bytes).unwrap_err();
        assert!(matches!(err, VerifyError::Malformed(_)), "{what}: {err}");
        assert!(
            err.to_string().starts_with("CMS signature is malformed"),
            "{what}: {err}"
        );
    }
}

#[test]
fn bad_inputs_to_constructors() {
    let pki = Pki::new();
    let id = pki.self_signed("k", KeyKind::P256, EXT_SIGNER, 30);
    assert!(Verifier::from_pem(b"")
        .unwrap_err()
        .to_string()
        .contains("no CERTIFICATE"));
    assert!(Verifier::from_pem(&id.key_pem())
        .unwrap_err()
        .to_string()
        .contains("expected CERTIFICATE"));
    assert!(Signer::from_pem(b"", &id.key_pem())
        .unwrap_err()
        .to_string()
        .contains("no CERTIFICATE"));
    assert!(Signer::from_pem(&id.cert_pem(), b"")
        .unwrap_err()
        .to_string()
        .contains("no private key"));
    openssl(
        pki.dir(),
        &[
            "pkcs8", "-topk8", "-in", "k.key", "-passout", "pass:x", "-out", "enc.key",
        ],
    );
    let err =
        Signer::from_pem(&id.cert_pem(), &std::fs::read(pki.path("enc.key")).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("encrypted private keys are not supported"),
        "{err}"
    );
}

/// Helper: `openssl cms -sign` of CONTENT by `id` with extra options; returns the DER signature.
fn openssl_sign(pki: &Pki, id: &Identity, extra: &[&str]) -> Vec<u8> {
    pki.write("content", CONTENT);
    let mut args = vec![
        "cms",
        "-sign",
        "-binary",
        "-outform",
        "DER",
        "-nosmimecap",
        "-in",
        "content",
        "-signer",
        id.cert.to_str().unwrap(),
        "-inkey",
        id.key.to_str().unwrap(),
        "-out",
        "helper.sig",
    ];
    args.extend(extra);
    openssl(pki.dir(), &args);
    std::fs::read(pki.path("helper.sig")).unwrap()
}

#[test]
fn signer_certificate_outside_the_signature() {
    // `-nocerts`: the signature carries no certificate. OpenSSL then needs the signer cert from elsewhere;
    // keel looks in the trusted certificates, so trusting the signer certificate itself works.
    let pki = Pki::new();
    let id = pki.self_signed("nocerts", KeyKind::P256, EXT_SIGNER, 30);
    let sig = openssl_sign(&pki, &id, &["-nocerts"]);
    let info = Verifier::from_pem(&id.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &sig)
        .unwrap();
    assert_eq!(info.subject, id.subject);
    // Trusting only a CA, the signer certificate is nowhere to be found.
    let root = pki.self_signed("nocerts-root", KeyKind::P256, EXT_CA, 30);
    let leaf = pki.issue("nocerts-leaf", KeyKind::P256, &root, EXT_SIGNER, 30);
    let sig = openssl_sign(&pki, &leaf, &["-nocerts"]);
    let err = Verifier::from_pem(&root.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &sig)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::SignerCertificateMissing(_)),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("issuer CN=nocerts-root,O=keel test"),
        "{err}"
    );
}

#[test]
fn small_rsa_keys_are_refused() {
    let pki = Pki::new();
    let weak = pki.self_signed("weak", KeyKind::Rsa1024, EXT_SIGNER, 30);
    let err = Signer::from_pem(&weak.cert_pem(), &weak.key_pem()).unwrap_err();
    assert!(
        err.to_string()
            .contains("RSA key of 1024 bits is too small"),
        "{err}"
    );
    let sig = openssl_sign(&pki, &weak, &[]);
    let err = Verifier::from_pem(&weak.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &sig)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("RSA key of 1024 bits is too small"),
        "{err}"
    );
}

#[test]
fn multiple_signers_must_all_verify() {
    // openssl cms -sign with two -signer options: both SignerInfos must verify and chain.
    let pki = Pki::new();
    let a = pki.self_signed("multi-a", KeyKind::P256, EXT_SIGNER, 30);
    let b = pki.self_signed("multi-b", KeyKind::Rsa2048, EXT_SIGNER, 30);
    let sig = openssl_sign(
        &pki,
        &a,
        &[
            "-signer",
            b.cert.to_str().unwrap(),
            "-inkey",
            b.key.to_str().unwrap(),
        ],
    );
    let both = [a.cert_pem(), b.cert_pem()].concat();
    Verifier::from_pem(&both)
        .unwrap()
        .verify_detached(CONTENT, &sig)
        .unwrap();
    let err = Verifier::from_pem(&a.cert_pem())
        .unwrap()
        .verify_detached(CONTENT, &sig)
        .unwrap_err();
    assert!(err.to_string().contains("CN=multi-b"), "{err}");
}
