//! Building, verifying and inspecting signed, optionally encrypted, reproducible .swu bundles.
