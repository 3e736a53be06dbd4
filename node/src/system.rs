//! Process setup the gateway's measurements depend on: transparent huge
//! pages off, the open-files limit raised.

/// Turn transparent huge pages off for this process. mimalloc asks for
/// them on its arenas; then every fresh 2 MiB region is zeroed on first
/// touch (a mass admission of 19,000 fans spent ~45 ms of its 80 ms in the
/// kernel's page clearing) and half-used huge pages inflate memory per
/// connection (12.1 → 10.0 KB per fan without them). Call first thing.
pub(crate) fn no_transparent_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("onsale: could not turn transparent huge pages off: {e}");
    }
}

/// Raise the soft open-files limit to the hard limit; the new soft limit.
pub(crate) fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1_024, |(soft, _)| soft)
        }
    }
}
