//! SWUpdate .swu container formats: cpio (newc/crc), sw-description (libconfig and JSON),
//! streaming bundle reader and writer.
//!
//! * [`cpio`]: [`cpio::CpioReader`] (streaming, checksum-verifying) and [`cpio::CpioWriter`]
//!   (070702, reproducible metadata).
//! * [`swdesc`]: [`swdesc::SwDescription`] parse (libconfig or JSON), resolve (`-e set,mode`),
//!   write libconfig.
//! * [`swu`]: [`swu::SwuReader`] / [`swu::SwuWriter`]: member order rules of a `.swu`.
//! * [`names`]: DDI attribute and sw-description property names shared by agent, bundle and server.
//!
//! Every parser here takes untrusted bytes: errors, never panics; each has a fuzz target.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cpio;
pub mod names;
pub mod swdesc;
pub mod swu;
