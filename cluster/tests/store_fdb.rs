//! The FoundationDB store against a live cluster: the whole conformance
//! suite, when `FDB_CLUSTER_FILE` names a cluster file (see the README).
//! Without it the test says it was skipped and passes.
//!
//! Each check gets a fresh root subspace `("onsale-conformance-<run>-<n>",)`;
//! all of them are deleted at the end.

#![cfg(feature = "fdb")]

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use onsale_cluster::store::Store;
use onsale_cluster::store::conformance;
use onsale_cluster::store::fdb::{FdbStore, with_network};

const CLUSTER_FILE_ENV: &str = "FDB_CLUSTER_FILE";

/// One test: the FoundationDB network starts once per process.
#[test]
fn foundationdb_store_passes_the_conformance_suite() {
    let Some(cluster_file) = std::env::var_os(CLUSTER_FILE_ENV) else {
        eprintln!(
            "skipped: set {CLUSTER_FILE_ENV} to a cluster file to run the FoundationDB suite"
        );
        return;
    };
    let cluster_file = cluster_file
        .into_string()
        .expect("FDB_CLUSTER_FILE is UTF-8");
    assert!(
        std::path::Path::new(&cluster_file).is_file(),
        "{CLUSTER_FILE_ENV}={cluster_file} is not a file"
    );
    let run = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    with_network(|| {
        let roots = RefCell::new(Vec::new());
        let make = || -> Box<dyn Store> {
            let root = format!("onsale-conformance-{run}-{}", roots.borrow().len());
            let store = FdbStore::open_under(Some(&cluster_file), &root).expect("connect");
            store.clear_all().expect("clear a fresh root");
            roots.borrow_mut().push(root);
            Box::new(store)
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            conformance::run_all(&make);
        }));
        for root in roots.borrow().iter() {
            let store = FdbStore::open_under(Some(&cluster_file), root).expect("connect");
            store.clear_all().expect("clean up a test root");
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    })
    .expect("the FoundationDB network starts");
}
