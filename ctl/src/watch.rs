//! One answer, or `--watch`: poll, then print an NDJSON line per poll (or
//! redraw the table when stdout is a terminal and the format is a table).
//! A poll that fails while watching is reported on stderr and the watch
//! goes on; it ends when the operator interrupts it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::Watch;
use crate::error::Result;
use crate::output::Out;
use crate::timefmt;

/// What one poll shows: its JSON form and its table form.
#[derive(Debug)]
pub struct View {
    pub json: Value,
    pub table: String,
}

pub fn run(out: Out, watch: &Watch, mut poll: impl FnMut() -> Result<View>) -> Result<()> {
    if !watch.watch {
        let view = poll()?;
        if out.json() {
            out.document(&view.json);
        } else {
            print!("{}", view.table);
        }
        return Ok(());
    }
    let interval = timefmt::parse_duration(&watch.interval)?.max(Duration::from_millis(100));
    let redraw = !out.json() && std::io::stdout().is_terminal();
    loop {
        let started = Instant::now();
        match poll() {
            Ok(view) if redraw => {
                print!(
                    "\x1b[H\x1b[2J{}  (every {}; Ctrl-C to stop)\n\n{}",
                    timefmt::local(timefmt::now_ms()),
                    timefmt::age(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX)),
                    view.table
                );
            }
            Ok(view) => out.line(&view.json),
            Err(error) => out.error(&error),
        }
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    }
}
