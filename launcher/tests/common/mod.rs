//! Helpers for tests that run the real binaries as a user would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `gan-launch` binary under test.
pub fn gan_launch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gan-launch"));
    // Tests pass their config explicitly; config variables from the caller's shell must not leak in.
    for (name, _) in std::env::vars() {
        if name.starts_with("GAN_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// The trainer binary installed beside `gan-launch` (built by `cargo build` of the workspace).
pub fn gan_train_path() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_gan-launch")).with_file_name("gan-train");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build` (make test does) before these tests",
        path.display()
    );
    path
}

/// A shipped config by file name.
pub fn shipped_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs").join(name)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `text` as a config file in `dir`.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("exp.yaml");
    std::fs::write(&path, text).unwrap();
    path
}
