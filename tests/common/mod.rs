//! The test kit: runs the real `devserve` binary (and the fixture apps) over loopback, for the
//! integration tests in `tests/*.rs` and for the benchmark in `bench/`.
//!
//! # Layout
//!
//! It stays at `tests/common/mod.rs`, so cargo does not take it for a test of its own, and every
//! integration test includes it with `mod common;`. The benchmark is another crate; it includes
//! the very same files with `#[path = "../tests/common/mod.rs"] mod common;` (a `mod.rs` loaded
//! through `#[path]` still finds its submodules beside it). Nothing here may depend on being in a
//! test: no `#[test]`, no dev-dependency, only the crate's own dependencies (`nix`, `libc`,
//! `serde_json`).
//!
//! - [`wait`]: [`WAIT`], the generous deadline of every wait, and [`wait_until`]. Every wait is on a
//!   condition, never a fixed sleep.
//! - [`capture`]: [`Capture`], the lines a child printed on stdout and stderr, each stamped with
//!   its arrival time, and the JSON events among them ([`event_kind`]).
//! - [`process`]: [`Process`] (alias [`Devserve`]), a spawned child with its captured output:
//!   [`Devserve::start`], waits on human lines ([`Process::wait_for`]) and on JSON events
//!   ([`Process::wait_event`], [`Process::events`]), signals, exit. [`run_devserve`] runs devserve
//!   to completion and returns [`Finished`] (code, stdout, stderr, time taken); [`one_error`]
//!   runs one that must fail with a single error line.
//! - [`fixtures`]: the fixture apps ([`rust_fixture`], [`python_fixture`], [`python_command`])
//!   and [`Fixture`], which puts one under devserve ([`Fixture::start`], or [`Fixture::serve`]
//!   that also waits for gen 1); the apps of `tests/apps/` ([`app`], and [`serve_app`] behind the
//!   front door); [`swap_and_wait`], a save and the generation it starts.
//! - [`http`]: a minimal client ([`http_get`]), [`field`], [`wait_for_version`], [`free_port`] and
//!   [`Load`], client threads that count failures.
//! - [`procfs`]: `/proc` readers: [`process_state`], [`is_alive`], [`children`],
//!   [`descendants`], [`fd_count`], [`fd_targets`], [`cpu_ticks`], [`status_kib`].
//! - [`files`]: [`TempDir`], a fresh directory removed when it is dropped (set
//!   `DEVSERVE_TEST_KEEP=1` to keep them), and [`write`].
//! - [`ws`]: [`WsClient`], a minimal blocking WebSocket client (upgrade, masked text frames, one
//!   [`Frame`] at a time, so a test tells the app's close frame from a bare TCP cut).
//!
//! Set `DEVSERVE_TEST_ECHO=1` to see every captured line on the test's stderr as it arrives.

#![allow(dead_code, unused_imports)]

pub mod capture;
pub mod files;
pub mod fixtures;
pub mod http;
pub mod process;
pub mod procfs;
pub mod wait;
pub mod ws;

pub use capture::*;
pub use files::*;
pub use fixtures::*;
pub use http::*;
pub use process::*;
pub use procfs::*;
pub use wait::*;
pub use ws::*;
