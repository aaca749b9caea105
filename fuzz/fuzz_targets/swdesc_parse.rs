//! Fuzzes the sw-description parser (libconfig and JSON) and resolver. Property: whatever
//! parses is written as libconfig that parses back to the same tree.
#![no_main]

use keel_formats::swdesc::SwDescription;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(description) = SwDescription::parse(data) else { return };
    let _ = description.software();
    for (set, mode) in description.selections() {
        let _ = description.select(&[&set, &mode]);
    }
    let _ = description.all_member_entries();
    let _ = description.tree_member_entries();
    let text = description.to_libconfig();
    let again = SwDescription::parse(text.as_bytes()).expect("keel's own libconfig output must parse");
    assert_eq!(again.root(), description.root(), "libconfig round trip changed the tree");
});
