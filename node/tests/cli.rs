//! The `onsale` binary as a user meets it: its help, its errors, the demo
//! table, and the secret files it makes beside the store.
//!
//! (Being an integration test of this package, this also makes
//! `cargo test --workspace` build `target/<profile>/onsale`, the binary
//! the process tests in `tests/` start.)

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const ONSALE: &str = env!("CARGO_BIN_EXE_onsale");

/// Run `onsale` with `args` to completion, with no inherited settings.
fn onsale(args: &[&str]) -> Output {
    Command::new(ONSALE)
        .args(args)
        .env_remove("ONSALE_OPERATOR_TOKEN")
        .env_remove("ONSALE_TOKEN_SECRET")
        .env_remove("ONSALE_LISTEN")
        .env_remove("ONSALE_RPC")
        .env("ONSALE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("onsale runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_names_the_ways_to_run_and_hides_the_test_knobs() {
    let out = onsale(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    for flag in ["--listen", "--rpc", "--store", "--demo", "--operator-token"] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(
        help.contains("onsale-demo.operator-token"),
        "--help names the operator-token file:\n{help}"
    );
    assert!(
        !help.contains("--fault-"),
        "fault injection stays hidden:\n{help}"
    );
}

#[test]
fn a_bad_flag_is_refused_with_a_clear_error() {
    let out = onsale(&["--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid value 'not-an-address'") && err.contains("--listen"),
        "{err}"
    );

    let out = onsale(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("unexpected argument '--frobnicate'"),
        "{out:?}"
    );

    let out = onsale(&[]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        text(&out.stderr).contains("nothing to do: pass --listen ADDR, --cluster-listen ADDR"),
        "{out:?}"
    );
}

/// The cluster cookie must be a secret: a file others can read is
/// refused (without showing the cookie), and so is a short one; a
/// gateway-only process never makes a store.
#[test]
fn mesh_flags_are_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let cookie = dir.path().join("cookie");
    std::fs::write(&cookie, "a cookie long enough to pass").expect("cookie");
    std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store = dir.path().join("s.db");
    let (cookie_arg, store_arg) = (cookie.display().to_string(), store.display().to_string());
    let out = onsale(&[
        "--cluster-listen",
        "127.0.0.1:0",
        "--cookie-file",
        &cookie_arg,
        "--store",
        &store_arg,
    ]);
    assert!(!out.status.success(), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("readable by others") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(
        !err.contains("a cookie long enough"),
        "the cookie was shown: {err}"
    );

    std::fs::write(&cookie, "short").expect("cookie");
    std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = onsale(&[
        "--cluster-listen",
        "127.0.0.1:0",
        "--cookie-file",
        &cookie_arg,
        "--store",
        &store_arg,
    ]);
    assert!(
        text(&out.stderr).contains("shorter than 16 bytes"),
        "{out:?}"
    );

    let out = onsale(&["--cluster-listen", "127.0.0.1:0", "--store", &store_arg]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--cluster-listen needs --cookie-file: {out:?}"
    );

    std::fs::write(&cookie, "a cookie long enough to pass").expect("cookie");
    assert!(
        !store.exists(),
        "a store was made before the flags were checked"
    );
    let out = onsale(&[
        "--role",
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--cluster-listen",
        "127.0.0.1:0",
        "--cookie-file",
        &cookie_arg,
        "--store",
        &store_arg,
    ]);
    assert!(text(&out.stderr).contains("never makes one"), "{out:?}");
    assert!(!store.exists(), "a gateway made a store");

    // TLS: the key and the CA come with the certificate; files that are
    // not PEM are refused by name, before any store is made.
    let mesh = [
        "--cluster-listen",
        "127.0.0.1:0",
        "--cookie-file",
        &cookie_arg,
    ];
    let not_pem = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello").expect("file");
    let not_pem = not_pem.display().to_string();
    let mut args = mesh.to_vec();
    args.extend(["--cluster-tls-cert", &not_pem, "--store", &store_arg]);
    let out = onsale(&args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a certificate without key and CA: {out:?}"
    );
    let mut args = mesh.to_vec();
    args.extend([
        "--cluster-tls-cert",
        &not_pem,
        "--cluster-tls-key",
        &not_pem,
        "--cluster-tls-ca",
        &not_pem,
        "--store",
        &store_arg,
    ]);
    let out = onsale(&args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains("TLS files are refused") && err.contains("not-a-cert.pem"),
        "{err}"
    );
    assert!(
        !store.exists(),
        "a store was made before the TLS files were checked"
    );
}

#[test]
fn the_demo_prints_the_same_table_for_the_same_seed() {
    let first = onsale(&["--demo", "--fans", "400", "--seed", "3"]);
    assert!(first.status.success(), "{first:?}");
    let table = text(&first.stdout);
    assert!(
        table.starts_with("onsale demo: "),
        "the table's title:\n{table}"
    );
    assert!(
        table.contains("Every invariant held after every step."),
        "{table}"
    );
    let again = onsale(&["--demo", "--fans", "400", "--seed", "3"]);
    assert_eq!(text(&again.stdout), table, "the same seed, the same table");
}

#[test]
fn the_secrets_beside_the_store_are_named_after_it_without_its_extension() {
    let dir = tempfile::tempdir().expect("a scratch dir");
    let store = dir.path().join("demo.db");
    let (serving, stderr) = serves(&store, &[]);
    assert!(serving, "onsale never said it was serving: {stderr}");

    let token = dir.path().join("demo.operator-token");
    let key = dir.path().join("demo.key");
    assert!(secret_mode(&token), "{} is private", token.display());
    assert!(secret_mode(&key), "{} is private", key.display());
    let token_text = std::fs::read_to_string(&token).expect("the operator token");
    assert!(token_text.trim().len() >= 16, "{token_text:?}");
    assert_eq!(std::fs::read(&key).expect("the key").len(), 32);
    assert!(!dir.path().join("demo.db.operator-token").exists());
}

/// Start `onsale --listen` on `store` with `extra` flags: whether it said
/// it was serving (it is then killed), and what it wrote to stderr.
fn serves(store: &Path, extra: &[&str]) -> (bool, String) {
    let mut child = Command::new(ONSALE)
        .args(["--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .args(extra)
        .env_remove("ONSALE_OPERATOR_TOKEN")
        .env_remove("ONSALE_TOKEN_SECRET")
        .env("ONSALE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("onsale starts");
    let stdout = child.stdout.take().expect("stdout");
    let serving = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("onsale serving http://127.0.0.1:"));
    let _ = child.kill();
    let out = child.wait_with_output().expect("onsale ends");
    (serving, text(&out.stderr))
}

/// An emptied store file used to be taken as a new store: with `--demo`
/// every seat went on sale again. It is refused now, naming the file,
/// unless the operator says `--init`.
#[test]
fn an_empty_store_file_is_refused_unless_told_to_init() {
    let dir = tempfile::tempdir().expect("a scratch dir");
    let store = dir.path().join("shop.db");
    let (serving, _) = serves(&store, &["--demo"]);
    assert!(serving, "a store that never existed is made");
    std::fs::write(&store, b"").expect("empty the store");
    let _ = std::fs::remove_file(dir.path().join("shop.db-wal"));
    let (serving, stderr) = serves(&store, &["--demo"]);
    assert!(!serving, "an emptied store must not be served as new");
    assert!(
        stderr.contains("shop.db"),
        "the error names the file: {stderr}"
    );
    assert!(
        stderr.contains("--init"),
        "the error says how to go on: {stderr}"
    );
    let (serving, stderr) = serves(&store, &["--demo", "--init"]);
    assert!(serving, "--init makes a new store: {stderr}");
}

/// The file exists and only its owner may read or write it.
fn secret_mode(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600)
}
