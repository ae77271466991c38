//! The bench's settings, from the environment.

use crate::shared::env;

/// Which load generator runs the throughput cells.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Debian's `wrk` (installed when missing; the hyper client stands in if that fails).
    Wrk,
    /// The bench's own hyper client (`proxy/client.rs`).
    Hyper,
}

/// `BENCH_PROXY_SECS`, `BENCH_PROXY_ROUNDS`, `BENCH_PROXY_SWAPS`, `BENCH_PROXY_REQUESTS`,
/// `BENCH_PROXY_CLIENT` and `BENCH_PROXY_PARTS`.
pub struct Config {
    /// Length of one measured cell, in seconds (each is preceded by a 1 s warm-up).
    pub secs: u64,
    /// How many times every cell is measured; the throughput table gives the median, the two-writes
    /// table the percentiles of every round's requests together.
    pub rounds: usize,
    /// Swaps under load in each mode of the uvicorn part.
    pub swaps: usize,
    /// Measured requests per round and route in the two-writes part (after a warm-up).
    pub requests: usize,
    pub client: ClientKind,
    /// `BENCH_PROXY_PARTS=throughput,swaps,two-writes`: a subset to run (default all).
    pub only: Option<String>,
}

impl Config {
    pub fn from_env() -> Config {
        let client = match std::env::var("BENCH_PROXY_CLIENT").as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("wrk") => ClientKind::Wrk,
            Ok("hyper") => ClientKind::Hyper,
            Ok(other) => {
                eprintln!("[bench] BENCH_PROXY_CLIENT={other:?} is neither `wrk` nor `hyper`");
                std::process::exit(2);
            }
        };
        Config {
            secs: env::number("BENCH_PROXY_SECS", 5),
            rounds: env::number("BENCH_PROXY_ROUNDS", 3),
            swaps: env::number("BENCH_PROXY_SWAPS", 20),
            requests: env::number("BENCH_PROXY_REQUESTS", 300),
            client,
            only: env::subset("BENCH_PROXY_PARTS"),
        }
    }

    pub fn selected(&self, key: &str) -> bool {
        env::selected(self.only.as_deref(), key)
    }

    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let client = if self.client == ClientKind::Hyper { "BENCH_PROXY_CLIENT=hyper " } else { "" };
        let only = self.only.as_ref().map(|only| format!("BENCH_PROXY_PARTS={only} "));
        format!(
            "{client}{}BENCH_PROXY_SECS={} BENCH_PROXY_ROUNDS={} BENCH_PROXY_SWAPS={} BENCH_PROXY_REQUESTS={} cargo bench --bench proxy",
            only.unwrap_or_default(),
            self.secs,
            self.rounds,
            self.swaps,
            self.requests
        )
    }
}
