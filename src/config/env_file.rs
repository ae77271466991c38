//! `env-file`: `.env` files as docker compose, process-compose and dotenv read them.
//!
//! Contract: one `KEY=VALUE` a line; blank lines and lines starting with `#` are skipped; a
//! leading `export ` is allowed. A value in double quotes may hold `\n`, `\"` and `\\` escapes
//! and spans one line; in single quotes it is taken as written; unquoted it is trimmed and ends
//! at ` #` (a comment). No `${VAR}` expansion: what the file says is what the app gets. A key
//! must be a variable name, and not one devserve sets itself. A file larger than 1 MiB is refused.

use std::path::Path;

/// The file's variables in file order (a key given twice: the later wins when collected).
pub(super) fn read(path: &Path) -> Result<Vec<(String, String)>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > 1024 * 1024 {
        return Err(format!("{shown} is larger than 1 MiB: not a .env file"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut vars = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |why: &str| format!("{shown}:{}: {why}", index + 1);
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            return Err(at("expected KEY=VALUE"));
        };
        let key = key.trim();
        let value = parse_value(value.trim()).ok_or_else(|| at("a quote is not closed"))?;
        crate::cli::check_env(key, &value).map_err(|e| at(&e))?;
        vars.push((key.to_owned(), value));
    }
    Ok(vars)
}

/// A value as written after `=`: quoted, or plain up to a ` #` comment. `None`: an open quote.
fn parse_value(raw: &str) -> Option<String> {
    if let Some(rest) = raw.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(value),
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        }
        return None;
    }
    if let Some(rest) = raw.strip_prefix('\'') {
        return rest.split_once('\'').map(|(value, _)| value.to_owned());
    }
    let value = raw.split_once(" #").map_or(raw, |(value, _)| value);
    Some(value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_people_write() {
        let dir = std::env::temp_dir().join(format!("devserve-env-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(".env");
        let text = "# comment\n\nA=1\nexport B = two words # note\nC=\"x\\ny \\\"q\\\"\"\nD='$NOT ${EXPANDED}'\nA=again\n";
        std::fs::write(&path, text).expect("write");
        let vars = read(&path).expect("valid");
        let expected =
            [("A", "1"), ("B", "two words"), ("C", "x\ny \"q\""), ("D", "$NOT ${EXPANDED}"), ("A", "again")];
        let expected: Vec<(String, String)> =
            expected.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        assert_eq!(vars, expected);
        std::fs::write(&path, "GOOD=1\nnot a pair\n").expect("write");
        assert!(read(&path).expect_err("bad line").ends_with(".env:2: expected KEY=VALUE"));
        std::fs::write(&path, "Q=\"open\n").expect("write");
        assert!(read(&path).expect_err("open quote").contains(":1: a quote is not closed"));
        std::fs::write(&path, "NOTIFY_SOCKET=/x\n").expect("write");
        assert!(read(&path).expect_err("devserve's own").contains("NOTIFY_SOCKET is set by devserve"));
    }
}
