//! Network namespaces the tests create, named `netobs-*` so leftovers are
//! easy to find, and deleted on drop, also when a test panics.
use std::{
    fs::File,
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{bail, Context, Result};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs `cmd`, failing with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

pub struct Netns {
    name: String,
}

impl Netns {
    /// A new namespace `netobs-<tag>-<pid>-<n>` with `lo` up.
    pub fn new(tag: &str) -> Result<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("netobs-{tag}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// `cmd` run inside the namespace. nsenter keeps this mount namespace
    /// (`ip netns exec` remounts /sys, which hides bpffs and cgroups).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs `args` inside the namespace; fails with stderr on error.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        let (program, rest) = args.split_first().context("empty command")?;
        run(self.command(program).args(rest))
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it
    /// creates live there, and keep working from any thread afterwards.
    pub fn run_in<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        let handle = std::thread::spawn(move || -> Result<R> {
            // SAFETY: a valid namespace fd; setns only affects this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                bail!("setns: {}", std::io::Error::last_os_error());
            }
            Ok(f())
        });
        match handle.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside keep the namespace alive; ours are gone by now.
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!(
                "netobs lab: could not delete namespace {}: {e:#}",
                self.name
            );
        }
    }
}

/// Deletes `netobs-*` namespaces left by test runs whose process is gone.
pub fn cleanup_stale() {
    let Ok(out) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if !name.starts_with("netobs-") {
            continue;
        }
        let pid = name
            .split('-')
            .rev()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| PathBuf::from(format!("/proc/{p}")).exists());
        if !alive {
            let _ = run(Command::new("ip").args(["netns", "del", name]));
        }
    }
}
