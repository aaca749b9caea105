//! Fuzzes the streaming cpio reader and the .swu reader on arbitrary bytes: they must return
//! errors, never panic, and never hand out more data than a header announced.
#![no_main]

use std::io::Read;

use keel_formats::cpio::CpioReader;
use keel_formats::swu::SwuReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = CpioReader::new(data);
    let mut buf = [0u8; 4096];
    for _ in 0..1024 {
        match reader.next_header() {
            Ok(Some(header)) => {
                let mut total = 0u64;
                let mut member = reader.data();
                // Read only every other member fully; the rest is skipped by next_header.
                if header.ino % 2 == 0 {
                    loop {
                        match member.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => total += n as u64,
                        }
                    }
                    assert!(total <= u64::from(header.size));
                }
            }
            Ok(None) | Err(_) => break,
        }
    }

    let mut swu = SwuReader::new(data);
    if swu.read_description().is_ok() {
        for _ in 0..1024 {
            match swu.next_member() {
                Ok(Some(mut m)) => {
                    let size = m.size;
                    let mut total = 0u64;
                    loop {
                        match m.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => total += n as u64,
                        }
                    }
                    assert!(total <= size);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
});
