//! Fixtures shared by keel's integration tests. A dev-dependency only (`publish = false`): every
//! crate's `tests/it` suite uses what two or more suites need from here, and keeps its
//! crate-specific helpers in its own `tests/it/common/`.
//!
//! * [`cmd`]: running a real tool, failing the test with its output.
//! * [`openssl`]: the real `openssl` command line, failing the test with its stderr.
//! * [`data`]: deterministic test images.
//! * [`pki`]: signing identities (key + certificate) made with openssl.
//! * [`http`]: a static HTTP file server (`python3 -m http.server`).
//! * `bundle` (feature `bundle`): signed `.swu` bundles made with keel-bundle.
//! * `tuf` (feature `tuf`): the offline TUF root ceremony with keel-tuf-repo.
//!
//! The features keep the kit usable by the lower-level crates' own tests: keel-sign's suite uses
//! it without `sign`, keel-tuf-repo's without `tuf`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "bundle")]
pub mod bundle;
pub mod cmd;
pub mod data;
pub mod http;
pub mod openssl;
pub mod pki;
#[cfg(feature = "tuf")]
pub mod tuf;
