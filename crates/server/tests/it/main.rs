//! The integration tests of keel-server, one binary (one link step) for the whole crate: a
//! module per subject. Run one with `cargo test -p keel-server --test it -- <module>::`.

mod abuse;
mod agent_ddi;
mod auth;
mod common;
mod crash;
mod dashboard;
mod dashboard_e2e;
mod ddi;
mod delta_e2e;
mod delta_swupdate;
mod mgmt;
mod migrations;
mod replicas;
mod rollout;
mod s3_storage;
mod security;
mod swupdate_suricatta;
mod tls;
mod tuf_e2e;
mod tuf_prune;
mod tuf_replicas;
