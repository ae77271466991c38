//! The bench's settings, from the environment.

use crate::shared::env;

/// `BENCH_SAVES`, `BENCH_LOAD_SECS`, `BENCH_RELOADS` and `BENCH_SCENARIOS`.
pub struct Config {
    pub saves: usize,
    pub load_secs: u64,
    pub reloads: usize,
    /// `BENCH_SCENARIOS=fresh,load,storm,idle,hygiene`: a subset to run (default all).
    pub only: Option<String>,
}

impl Config {
    pub fn from_env() -> Config {
        Config {
            saves: env::number("BENCH_SAVES", 20),
            load_secs: env::number("BENCH_LOAD_SECS", 30),
            reloads: env::number("BENCH_RELOADS", 500),
            only: env::subset("BENCH_SCENARIOS"),
        }
    }

    pub fn selected(&self, key: &str) -> bool {
        env::selected(self.only.as_deref(), key)
    }

    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let peers = std::env::var("DEVSERVE_BENCH_PEERS").map(|p| format!("DEVSERVE_BENCH_PEERS={p} "));
        let only = self.only.as_ref().map(|only| format!("BENCH_SCENARIOS={only} "));
        format!(
            "{}{}BENCH_SAVES={} BENCH_LOAD_SECS={} BENCH_RELOADS={} cargo bench --bench reload",
            peers.unwrap_or_default(),
            only.unwrap_or_default(),
            self.saves,
            self.load_secs,
            self.reloads
        )
    }
}
