//! Running commands: each is printed before it runs, and a failure names the
//! command and its exit status in one line.
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited output; fails if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    eprintln!("+ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its output, whatever its status.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let shown = show(cmd);
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))
}

/// stdout of a command that must succeed.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A cargo invocation free of the variables the outer `cargo xtask` set,
/// which would pin the inner one to the outer toolchain.
pub fn cargo(toolchain: Option<&str>) -> Command {
    let mut c = Command::new("cargo");
    if let Some(t) = toolchain {
        c.arg(format!("+{t}"));
    }
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO",
    ] {
        c.env_remove(var);
    }
    c
}
