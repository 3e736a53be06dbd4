//! The node's secrets: the token signing key and the operators' bearer
//! token, from the environment or from files beside the store.
//!
//! Both files are named after the store without its extension: for
//! `onsale-demo.db`, `onsale-demo.key` and `onsale-demo.operator-token`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use onsale_schema::token::TokenKey;

/// The file beside `store` holding a secret of `kind` (`key`,
/// `operator-token`): the store's name with its extension replaced.
pub(crate) fn secret_path(store: &Path, kind: &str) -> PathBuf {
    store.with_extension(kind)
}

/// The operators' bearer token: `given` (the flag or
/// `ONSALE_OPERATOR_TOKEN`), else read from the operator-token file beside
/// the store, created with a random token the first time.
pub(crate) fn operator_token(given: Option<&str>, store: &Path) -> anyhow::Result<String> {
    match given {
        Some(token) if token.len() >= 16 => return Ok(token.to_owned()),
        Some(_) => bail!("the operator token must be at least 16 bytes"),
        None => {}
    }
    let path = secret_path(store, "operator-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if token.trim().len() >= 16 => Ok(token.trim().to_owned()),
        Ok(_) => bail!("{} holds a token shorter than 16 bytes", path.display()),
        Err(_) => {
            let raw: [u8; 24] = random_bytes()?;
            let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            write_secret(&path, token.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(file = %path.display(), "operator token created");
            Ok(token)
        }
    }
}

/// The token signing key: `ONSALE_TOKEN_SECRET`, or a key file beside the
/// store, created from the OS's randomness the first time. Every node of a
/// cluster must use the same key, or queue tokens fail after a failover.
pub(crate) fn token_key(store: &Path) -> anyhow::Result<TokenKey> {
    if let Ok(secret) = std::env::var("ONSALE_TOKEN_SECRET") {
        if secret.len() < 16 {
            bail!("ONSALE_TOKEN_SECRET must be at least 16 bytes");
        }
        return Ok(TokenKey::derive(secret.as_bytes()));
    }
    let path = secret_path(store, "key");
    if let Ok(bytes) = std::fs::read(&path) {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()))?;
        return Ok(TokenKey::from_bytes(key));
    }
    let key: [u8; 32] = random_bytes()?;
    match write_secret(&path, &key) {
        Ok(()) => Ok(TokenKey::from_bytes(key)),
        // Another process sharing the store made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => token_key(store),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut raw = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .context("reading /dev/urandom")?;
    Ok(raw)
}

/// Create a secret file readable by this user only; never overwrite one.
fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The cluster cookie from `path`: trimmed, at least 16 bytes, in a file
/// that group and others cannot read. The error never shows the cookie.
pub(crate) fn cluster_cookie(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading the cookie file {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "the cookie file {} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    let cookie = std::fs::read_to_string(path)
        .with_context(|| format!("reading the cookie file {}", path.display()))?;
    let cookie = cookie.trim();
    if cookie.len() < 16 {
        bail!("the cookie in {} is shorter than 16 bytes", path.display());
    }
    Ok(cookie.to_owned())
}
