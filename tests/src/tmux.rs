//! `netobs top` driven for real: a terminal of its own in a detached tmux
//! server, read back as the user would see it.
use std::{
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

/// A detached tmux server of the test's own, killed when the test ends.
pub struct Tmux(String);

impl Tmux {
    pub fn start(command: &str) -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let t = Tmux(format!("netobs-test-{}-{n}", std::process::id()));
        let ok = t
            .cmd()
            .args(["new-session", "-d", "-x", "200", "-y", "40", command])
            .status()
            .expect("tmux (apt-get install tmux)");
        assert!(ok.success(), "starting tmux");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.0]);
        c
    }

    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn keys(&self, keys: &str) {
        let _ = self.cmd().args(["send-keys", keys]).status();
    }

    /// The screen once `pred` holds; fails after 30 s with the screen.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        for _ in 0..150 {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("waiting for {what}; the screen:\n{}", self.screen());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}
