//! `onsale-sim`: run a scenario deterministically, or compare two runs.
//!
//! ```text
//! onsale-sim run sim/scenarios/club.toml --seed 1 --out /tmp/club
//! onsale-sim compare /tmp/a /tmp/b --out /tmp/a-vs-b
//! onsale-sim check sim/scenarios/*.toml
//! onsale-sim load --target http://127.0.0.1:8080 --event 1 --fans 1000 --workers 2
//! ```

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use onsale_sim::engine::{self, Progress};
use onsale_sim::load::WorkerPlan;
use onsale_sim::load::coordinator::LoadOptions;
use onsale_sim::output;
use onsale_sim::scenario::Scenario;

#[derive(Debug, Parser)]
#[command(
    name = "onsale-sim",
    version,
    about = "Deterministic onsale simulation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a scenario; write summary.json, timeseries.csv and report.html.
    Run {
        scenario: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Put two runs side by side: compare.json and compare.html.
    Compare {
        a: PathBuf,
        b: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check scenario files without running them.
    Check { scenarios: Vec<PathBuf> },
    /// Drive a real gateway with simulated fans over real sockets, from
    /// worker processes; check what the fans saw and report latencies.
    Load(Box<LoadOptions>),
    /// One worker of `load` (spawned by it; JSON lines on stdout).
    #[command(hide = true)]
    LoadWorker {
        #[arg(long)]
        plan: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("onsale-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            scenario,
            seed,
            out,
            quiet,
        } => simulate(&scenario, seed, &out, quiet),
        Command::Compare { a, b, out } => {
            onsale_sim::compare::compare(&a, &b, &out)?;
            eprintln!("wrote {}", out.join("compare.html").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { scenarios } => {
            for path in scenarios {
                let s = Scenario::load(&path)?;
                let defences = s.file.defences.on();
                println!(
                    "{}: ok ({}, {} fans, venue {} with {} seats, defences: {})",
                    path.display(),
                    s.file.name,
                    s.file.arrivals.fans,
                    s.venue_path.display(),
                    s.venue.seat_count(),
                    if defences.is_empty() {
                        "none".to_owned()
                    } else {
                        defences.join(", ")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Load(options) => load(&options),
        Command::LoadWorker { plan } => {
            let plan: WorkerPlan = serde_json::from_str(&plan)?;
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            onsale_sim::load::worker::run(&plan, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load(options: &LoadOptions) -> anyhow::Result<ExitCode> {
    let report = onsale_sim::load::coordinator::run(options)?;
    eprint!("{}", onsale_sim::load::report::summary(&report));
    if let Some(path) = &options.out {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
        eprintln!("wrote {}", path.display());
    }
    if report.is_violated() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn simulate(path: &Path, seed: u64, out: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(path)?;
    let started = Instant::now();
    let show = !quiet && std::io::stderr().is_terminal();
    let mut bar = |p: &Progress| {
        if show {
            progress_bar(p, started);
        }
    };
    let result = engine::run(&scenario, seed, &mut bar)?;
    let wall = started.elapsed().as_secs_f64();
    if show {
        eprintln!();
    }
    output::write_run(out, &scenario, &result)?;
    let s = &result.summary;
    eprintln!(
        "{}: {} events in {wall:.2} s wall ({:.0} events/s); {} of {} seats sold; outputs in {}",
        s.scenario,
        s.events_processed,
        s.events_processed as f64 / wall.max(1e-9),
        s.tickets_sold,
        s.capacity,
        out.display()
    );
    if let Some(v) = &result.violation {
        eprintln!("onsale-sim: {v}");
        eprintln!(
            "replay with: onsale-sim run {} --seed {} --out DIR",
            path.display(),
            v.seed
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// A hand-made bar on stderr; it never touches the outputs.
fn progress_bar(p: &Progress, started: Instant) {
    let done = p.arrivals as f64 / p.fans.max(1) as f64;
    let width = 30;
    let filled = ((done * width as f64) as usize).min(width);
    let rate = p.steps as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {:5.1}% arrivals {}/{}  t={:.0}s  {} events ({:.1}M/s)   ",
        "#".repeat(filled),
        ".".repeat(width - filled),
        done * 100.0,
        p.arrivals,
        p.fans,
        p.at_ms as f64 / 1000.0,
        p.steps,
        rate / 1e6
    );
    let _ = err.flush();
}
