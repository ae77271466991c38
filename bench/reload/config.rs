//! The bench's settings, from the environment.

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
            saves: env_number("BENCH_SAVES", 20),
            load_secs: env_number("BENCH_LOAD_SECS", 30),
            reloads: env_number("BENCH_RELOADS", 500),
            only: std::env::var("BENCH_SCENARIOS").ok().filter(|s| !s.trim().is_empty()),
        }
    }

    pub fn selected(&self, key: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only.split(',').any(|k| k.trim() == key))
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

fn env_number<T: std::str::FromStr + Copy + PartialOrd + From<u8>>(name: &str, default: T) -> T {
    let Ok(text) = std::env::var(name) else {
        return default;
    };
    match text.trim().parse::<T>() {
        Ok(n) if n >= T::from(1) => n,
        _ => {
            eprintln!("[bench] {name}={text:?} is not a positive whole number");
            std::process::exit(2);
        }
    }
}
