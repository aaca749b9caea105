//! The cms_verify fuzz seeds (OpenSSL signatures) verify against the fuzz target's fixed trust anchors:
//! keeps the seeds meaningful, and covers the RSA root -> P-384 intermediate -> RSA leaf chain and SHA-512.

use keel_sign::Verifier;

#[test]
fn fuzz_seeds_verify() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/cms_verify");
    let trust = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fuzz_trust.pem"
    ))
    .unwrap();
    let content = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fuzz_content.txt"
    ))
    .unwrap();
    let verifier = Verifier::from_pem(&trust).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("der") {
            continue;
        }
        let sig = std::fs::read(&path).unwrap();
        let info = verifier
            .verify_detached(&content, &sig)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(info.subject.starts_with("CN=fuzz "), "{}", info.subject);
        assert!(verifier.verify_detached(b"other content", &sig).is_err());
        checked += 1;
    }
    assert_eq!(checked, 5, "expected the five OpenSSL seeds");
}
