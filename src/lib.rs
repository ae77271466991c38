//! devserve: rebuild and swap a server on every save, without ever refusing a connection.
//!
//! The modules form layers; each uses only the layers below it (no cycles):
//!
//! 1. [`app`]: one invocation, from arguments to exit status.
//! 2. [`cli`], [`config`]: what the user asked for, parsed and validated into a [`config::Config`].
//! 3. [`supervisor`]: the one loop that owns all state and decides (policy), with its effects
//!    behind [`procs`].
//! 4. [`generation`], [`build`], [`procs`]: a set of workers, a build, the process table.
//! 5. [`spawn`], [`sockets`], [`readiness`], [`watch`], [`signals`], [`sentinel`], [`runtime`],
//!    [`control`]: one OS concern each.
//! 6. [`event`], [`output`]: the messages the threads send the supervisor, and what devserve
//!    prints.

pub mod app;
pub mod build;
pub mod cli;
pub mod config;
pub mod control;
pub mod event;
pub mod generation;
pub mod output;
pub mod readiness;
pub mod runtime;
pub mod sentinel;
pub mod signals;
pub mod sockets;
pub mod spawn;
pub mod supervisor;
pub mod watch;
