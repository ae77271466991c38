//! What both benches (`reload.rs`, `proxy.rs`) share: the process guard and the marker sweep
//! ([`process`]), the release build and `PATH` lookups ([`build`]), settings from the
//! environment ([`env`]) and the report helpers ([`report`]). Each entry point includes it with
//! `#[path = "shared/mod.rs"] mod shared;`, next to the test kit (`crate::common`), which it uses.

// Each bench uses only part of it.
#![allow(dead_code)]

pub mod build;
pub mod env;
pub mod process;
pub mod report;
