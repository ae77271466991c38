//! Waiting on conditions, with one generous deadline.

use std::time::{Duration, Instant};

/// Long enough for a loaded 2-core CI machine; conditions usually hold within milliseconds.
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `condition` every 10 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
