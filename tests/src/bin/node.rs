//! The `onsale` node, built in this package for the process tests.

fn main() -> anyhow::Result<()> {
    onsale_gateway::cli::main()
}
