//! A console on a terminal: `mpx console` in a tmux session of its own, typed into and read
//! back (`send-keys`, `capture-pane`).

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::bin;

/// A console in a tmux session of its own, killed (by its name) on drop.
pub struct Tmux {
    name: String,
}

impl Tmux {
    /// `mpx console` on the cluster of `home`, once it printed its banner.
    pub fn start(home: &Path, tag: &str) -> Tmux {
        Tmux::start_with(home, tag, "")
    }

    /// A console started with more arguments (e.g. `--no-autopx`).
    pub fn start_with(home: &Path, tag: &str, args: &str) -> Tmux {
        let name = format!("mpx-{tag}-{}", std::process::id());
        let console = format!("{} console {args}", bin("mpx").display());
        // A tmux server whose last session just ended may still be exiting: try a few times.
        let started = (0..10).any(|_| {
            let ok = Command::new("tmux")
                .args(["new-session", "-d", "-s", &name, "-x", "120", "-y", "40"])
                .args(["-e", &format!("MPX_HOME={}", home.display())])
                .arg(&console)
                .status()
                .expect("tmux")
                .success();
            if !ok {
                std::thread::sleep(Duration::from_millis(200));
            }
            ok
        });
        assert!(started, "tmux new-session failed");
        let t = Tmux { name };
        t.wait_for("%help for help", Duration::from_secs(30));
        t
    }

    /// Types keys (tmux key names: `Enter`, `Tab`, `C-c`, or text).
    pub fn keys(&self, keys: &[&str]) {
        let status =
            Command::new("tmux").args(["send-keys", "-t", &self.name]).args(keys).status().expect("tmux");
        assert!(status.success());
    }

    /// What the terminal shows.
    pub fn screen(&self) -> String {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.name]).output().expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) until the screen shows `text`; returns the screen.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "{text:?} not on the screen after {timeout:?}:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Tmux {
    /// Waits (bounded) until the console waits for input: its last line is the bare prompt
    /// (keys typed earlier would reach the terminal while a cell runs, not the editor).
    pub fn idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| matches!(l.trim_end(), "mpx>" | "[px]>"))
            {
                return;
            }
            assert!(Instant::now() < deadline, "no prompt after 30 s:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types a cell once the console is idle, and waits for `expect` on the screen.
    pub fn cell(&self, keys: &[&str], expect: &str) -> String {
        self.idle();
        self.keys(keys);
        self.wait_for(expect, Duration::from_secs(30))
    }

    /// Waits (bounded) until the console has exited and its session ended.
    pub fn wait_gone(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Command::new("tmux")
            .args(["has-session", "-t", &self.name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "the console did not exit:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.name]).stderr(Stdio::null()).status();
    }
}
