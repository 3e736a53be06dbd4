//! `onsale`: the onsale node. See `onsale --help`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    onsale_gateway::cli::main()
}
