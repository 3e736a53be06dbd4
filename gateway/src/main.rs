//! `onsale`: the onsale node. See `onsale --help`.

/// mimalloc: cheaper frees and less memory per fan connection than glibc's
/// malloc under many small, long-lived allocations (measured with
/// `scripts/bench-websockets.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    onsale_gateway::cli::no_transparent_huge_pages();
    onsale_gateway::cli::main()
}
