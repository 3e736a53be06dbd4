//! `onsale`: the onsale node. See `onsale --help`.

fn main() -> anyhow::Result<()> {
    onsale_gateway::cli::main()
}
