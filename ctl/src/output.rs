//! How answers are shown: aligned tables (`-o table`, `-o wide`), JSON
//! (`-o json`, one document, or one line per update with `--watch`), and
//! errors on stderr (JSON with `-o json`).

use std::fmt::Display;
use std::io::Write;

use serde_json::Value;

use crate::error::CtlError;
use crate::timefmt;

/// `-o table|wide|json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Wide,
    Json,
}

/// The output settings every command shares.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    pub format: Format,
    pub no_headers: bool,
}

impl Out {
    #[must_use]
    pub fn json(self) -> bool {
        self.format == Format::Json
    }

    #[must_use]
    pub fn wide(self) -> bool {
        self.format == Format::Wide
    }

    /// Print a table, or nothing but the rows with `--no-headers`.
    pub fn table(self, table: &Table) {
        print!("{}", table.render(!self.no_headers));
    }

    /// Print one JSON document (pretty) with times in RFC 3339.
    pub fn document(self, value: &Value) {
        let value = json_times(value.clone());
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
        );
    }

    /// Print one NDJSON line with times in RFC 3339, flushed at once.
    pub fn line(self, value: &Value) {
        let value = json_times(value.clone());
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{value}");
        let _ = stdout.flush();
    }

    /// An error on stderr, as JSON with `-o json`.
    pub fn error(self, error: &CtlError) {
        if self.json() {
            let value = serde_json::json!({
                "error": {"code": error.code, "message": error.message,
                          "exit_code": error.kind.exit_code()}
            });
            eprintln!("{value}");
        } else {
            eprintln!("onsalectl: {}", error.message);
        }
    }
}

/// Fields that hold ms since the epoch, shown as RFC 3339 in JSON output.
const TIME_KEYS: [&str; 8] = [
    "starts_at",
    "lease_expires",
    "heartbeat_expires",
    "expires",
    "at",
    "time",
    "deadline",
    "decided_at",
];

/// Replace every ms-since-epoch time under a known key by RFC 3339.
#[must_use]
pub fn json_times(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match (TIME_KEYS.contains(&k.as_str()), v.as_u64()) {
                        (true, Some(ms)) => Value::String(timefmt::rfc3339(ms)),
                        _ => json_times(v),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(json_times).collect()),
        other => other,
    }
}

/// A table of text cells, columns padded to their widest cell.
#[derive(Clone, Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    #[must_use]
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    #[must_use]
    pub fn render(&self, headers: bool) -> String {
        let columns = self.headers.len();
        let mut widths = vec![0; columns];
        let shown: Vec<&Vec<String>> = if headers {
            std::iter::once(&self.headers).chain(&self.rows).collect()
        } else {
            self.rows.iter().collect()
        };
        for row in &shown {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for row in shown {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < columns {
                    let pad = widths[i] - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// Key-value lines (`describe`): a two-column table without headers.
#[must_use]
pub fn pairs(rows: &[(&str, String)]) -> String {
    let mut table = Table::new(&["", ""]);
    for (key, value) in rows {
        table.row(vec![format!("{key}:"), value.clone()]);
    }
    table.render(false)
}

/// A cell for an optional value: `-` when absent.
pub fn cell<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A cell for an optional time: local time, `-` when absent.
#[must_use]
pub fn time_cell(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_owned(), timefmt::local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_drop_headers_on_request() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["1".into(), "Demo night".into()]);
        t.row(vec!["12".into(), "x".into()]);
        assert_eq!(t.render(true), "ID   NAME\n1    Demo night\n12   x\n");
        assert_eq!(t.render(false), "1    Demo night\n12   x\n");
    }

    #[test]
    fn json_times_become_rfc3339() {
        let v = serde_json::json!({"event":1,"starts_at":1796000000000u64,
            "lease":{"expires":1796000000000u64,"epoch":3},"owner":null,"lease_expires":null});
        let t = json_times(v);
        assert_eq!(t["starts_at"], "2026-11-30T00:53:20Z");
        assert_eq!(t["lease"]["expires"], "2026-11-30T00:53:20Z");
        assert_eq!(t["lease"]["epoch"], 3);
        assert!(t["lease_expires"].is_null());
    }
}
