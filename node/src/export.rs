//! `onsale export`: an event's sales as Parquet files for analytics
//! (DuckDB, pandas, ClickHouse), read from the store a node serves (or
//! served). See `onsale_feed::export` for the files.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use onsale_cluster::store::open::{OpenMode, open_store};
use onsale_cluster::store::sqlite::OpenError;
use onsale_schema::{EventId, Millis};

/// The `onsale export` command.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The event to export.
    #[arg(long)]
    pub(crate) event: u64,
    /// The directory to write `tickets.parquet`, `orders.parquet`,
    /// `admissions.parquet` and `timeline.parquet` into (made if missing).
    /// Files of those names there are replaced only once all four are
    /// written; a failed export leaves the directory as it was.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// The embedded store's file (the node's `--store`). A node may serve
    /// it meanwhile; the export writes nothing to it.
    #[arg(long, env = "ONSALE_STORE", default_value = "onsale.db")]
    pub(crate) store: PathBuf,
}

/// Export, and print one line per file written and the journal covered.
pub(crate) fn run_export(args: &ExportArgs) -> anyhow::Result<()> {
    let (store, _) =
        open_store(&args.store, OpenMode::Existing).map_err(|e| open_error(&args.store, e))?;
    let exported =
        onsale_feed::export::export(&store, EventId(args.event), &args.out, wall_clock())?;
    print!("{exported}");
    Ok(())
}

/// The store's own message suggests `--init`, which `export` has not: a
/// path that holds no store is named as such.
fn open_error(path: &Path, error: OpenError) -> anyhow::Error {
    match error {
        OpenError::NotAStore { why, .. } => anyhow::anyhow!(
            "{}: no onsale store here ({why}); give the node's store with --store PATH",
            path.display()
        ),
        other => other.into(),
    }
}

fn wall_clock() -> Millis {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Millis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}
