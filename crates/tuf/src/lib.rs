//! A strict, synchronous TUF client verifier for the device.
