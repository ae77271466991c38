//! Settings from the environment.

/// `name` as a whole number ≥ 1, `default` when unset; exits (status 2) on anything else.
pub fn number<T: std::str::FromStr + Copy + PartialOrd + From<u8>>(name: &str, default: T) -> T {
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

/// `name` as a comma-separated subset (`None`, meaning all, when unset or blank).
pub fn subset(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

/// Whether `key` is in the subset `only` (everything is when there is none).
pub fn selected(only: Option<&str>, key: &str) -> bool {
    only.is_none_or(|only| only.split(',').any(|k| k.trim() == key))
}
