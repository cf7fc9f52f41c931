//! Nothing of the same-host path outlives a process killed in the middle of it (issue 24):
//! memfds are anonymous (nothing in `/dev/shm` or on disk) and vanish with their last
//! descriptor and mapping. A client killed with SIGKILL while it pushes a large array through a
//! memfd leaves no descriptor in the controller, no mapping in the engines except an array that
//! was bound whole, and the cluster serving; a controller killed with SIGKILL takes its engines
//! with it and leaves nothing in `/dev/shm`.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use mpx_client::{Dtype, Targets};
use mpx_tests::{arrays::sample, mpx_cmd, Cluster, Kernel, TempDir};

/// SIGKILL to a process this test started.
fn kill9(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions; the pid is one this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

const T: Duration = Duration::from_secs(60);

/// The memfds mpx made that process `pid` holds open as descriptors.
fn memfd_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("memfd:mpx-"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Entries of `/dev/shm`.
fn dev_shm() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits (bounded) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !done() {
        assert!(Instant::now() < deadline, "{what} after {T:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn t69_a_client_killed_mid_push_leaves_nothing_behind() {
    let shm_before = dev_shm();
    let c = Cluster::start(Kernel::Python, "shm-kill", 4, &[]);
    let dir = TempDir::new("shm-kill-npy");
    let file = dir.0.join("big.npy");
    mpx_client::npy::write(&file, &sample(Dtype::F64, &[50_000_000], 69)).unwrap(); // 400 MB
    for delay_ms in [0u64, 150, 400] {
        let mut push = mpx_cmd(&c.home);
        push.args(["push", "x", file.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = push.spawn().expect("mpx push");
        std::thread::sleep(Duration::from_millis(delay_ms));
        kill9(child.id());
        let _ = child.wait();
        // The controller lets go of every descriptor; engines keep a mapping only for an
        // array bound whole.
        eventually("the controller still holds memfds", || memfd_fds(c.pids.controller) == 0);
        let client = c.client();
        let all = client.view(Targets::All);
        let out = all
            .execute_sync("m = open('/proc/self/maps').read().count('/memfd:mpx-')\n('x' in globals(), m)", T)
            .expect("the cluster serves");
        for r in out {
            let v = r.outcome.value.unwrap_or_default();
            assert!(v == "(False, 0)" || v == "(True, 1)", "delay {delay_ms} ms: engine says {v}");
        }
        all.execute_sync("globals().pop('x', None)", T).expect("cell");
    }
    c.stop();
    assert_eq!(dev_shm(), shm_before, "nothing new in /dev/shm");
}

#[test]
fn t69_a_controller_killed_after_memfd_moves_takes_everything_with_it() {
    let shm_before = dev_shm();
    let c = Cluster::start(Kernel::Python, "shm-kill-ctl", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    all.push_sync("x", &sample(Dtype::F64, &[1_000_000], 1), T).unwrap();
    assert_eq!(all.pull_sync("x", T).unwrap().len(), 4);
    drop(client);
    kill9(c.pids.controller);
    let left = c.pids.wait_gone(T);
    assert!(left.is_empty(), "processes left after the controller's SIGKILL: {left:?}");
    assert_eq!(dev_shm(), shm_before, "nothing new in /dev/shm");
}
