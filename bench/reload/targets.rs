//! The targets of the poll, first-serve and proxy sections: one `PASS` or `MISS` line each,
//! said on stderr as it is decided and printed again under the table.

use std::sync::{Mutex, PoisonError};

static VERDICTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records a target met (`pass`) or missed, with what was measured.
pub fn verdict(pass: bool, target: &str, measured: &str) {
    let line = format!("{} {target}: {measured}", if pass { "PASS" } else { "MISS" });
    eprintln!("[bench]   {line}");
    VERDICTS.lock().unwrap_or_else(PoisonError::into_inner).push(line);
}

/// Records a target that could not be measured: a miss, with the reason.
pub fn not_measured(target: &str, why: &str) {
    verdict(false, target, &format!("not measured ({why})"));
}

/// Passes devserve's result through, recording `target` as missed when it failed.
pub fn or_miss<T>(target: &str, result: Result<T, String>) -> Result<T, String> {
    if let Err(why) = &result {
        not_measured(target, why);
    }
    result
}

/// The lines so far, as a Markdown list under a heading; empty when no target was decided.
pub fn render() -> String {
    let verdicts = VERDICTS.lock().unwrap_or_else(PoisonError::into_inner);
    if verdicts.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = verdicts.iter().map(|line| format!("- {line}")).collect();
    format!("\n### Targets\n\n{}\n", lines.join("\n"))
}
