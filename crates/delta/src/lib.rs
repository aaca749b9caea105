//! Static seeded deltas and content-defined chunk indexes for images.
