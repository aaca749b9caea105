//! Arbitrary bytes as a detached CMS signature into `Verifier::verify_detached` with fixed trust anchors
//! (a self-signed P-256 signer and an RSA root CA). Seeds in fuzz/seeds/cms_verify/ are valid OpenSSL
//! signatures over CONTENT (self-signed, -noattr, -keyid, root -> intermediate -> leaf chain).
#![no_main]

use keel_sign::{CertPurpose, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const TRUST_PEM: &[u8] = include_bytes!("../../crates/sign/tests/data/fuzz_trust.pem");
const CONTENT: &[u8] = include_bytes!("../../crates/sign/tests/data/fuzz_content.txt");

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier::from_pem(TRUST_PEM).expect("fixed trust anchors parse"))
}

fuzz_target!(|data: &[u8]| {
    // Must never panic; errors are expected for almost all inputs.
    if let Ok(info) = verifier().verify_detached(CONTENT, data) {
        // Whatever verified must name a signer.
        assert!(!info.subject.is_empty());
    }
    let _ = verifier()
        .clone()
        .with_purpose(CertPurpose::Any)
        .with_signer_name(Some("fuzz signer".into()))
        .at_time(Some(1_800_000_000))
        .verify_detached(b"", data);
});
