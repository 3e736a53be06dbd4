pub fn run(_c: &crate::client::Client, _e: Option<u64>, _i: std::time::Duration) -> crate::error::Result<()> { Ok(()) }
