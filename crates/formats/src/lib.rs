//! SWUpdate .swu container formats: cpio (newc/crc), sw-description (libconfig and JSON), streaming bundle reader and writer.
