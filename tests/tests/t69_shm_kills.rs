//! Nothing of the same-host path outlives a process killed in the middle of it (issue 24):
//! memfds are anonymous (nothing in `/dev/shm` or on disk) and vanish with their last
//! descriptor and mapping. A client killed with SIGKILL while it pushes a large array through a
//! memfd leaves no descriptor in the controller, no mapping in the engines except an array that
//! was bound whole, and the cluster serving; a controller killed with SIGKILL takes its engines
//! with it and leaves nothing in `/dev/shm`; so does a rank killed in the middle of a gather into
//! a memfd that the other ranks write their rows into.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use mpx_client::{ClientError, Dtype, Targets};
use mpx_tests::{arrays::sample, memory::dev_shm, mpx_cmd, Cluster, Kernel, TempDir};

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

#[test]
fn t69_a_rank_killed_mid_gather_leaves_nothing_behind() {
    // A rank that writes its rows into the root's memfd, then the root that made it.
    for victim in [2, 0] {
        rank_killed_mid_gather(victim);
    }
}

fn rank_killed_mid_gather(victim_id: usize) {
    let shm_before = dev_shm();
    let c = Cluster::start(Kernel::Python, &format!("shm-kill-rank{victim_id}"), 4, &[]);
    let client = c.client();
    assert!(client.is_local(), "the same-host path needs a client on the controller's host");
    let all = client.view(Targets::All);
    // 100 MB of rows on each rank; their gather to this client goes through a 400 MB memfd of
    // engine 0 that the others write their rows into.
    all.scatter_sync("x", &sample(Dtype::F64, &[50_000_000], 691), T).unwrap();
    let victim = c.pids.engines[victim_id];
    let outcome = std::thread::scope(|s| {
        let gather = s.spawn(|| all.gather_sync("x", T));
        std::thread::sleep(Duration::from_millis(100));
        kill9(victim);
        gather.join().expect("the gather's thread")
    });
    // The gather ends with the rank's death (or whole, had it ended before the kill).
    match &outcome {
        Ok(whole) => assert_eq!(whole.shape(), [50_000_000], "a gather that ended first is whole"),
        Err(ClientError::EngineDied { engine, .. }) => assert_eq!(engine.get() as usize, victim_id),
        Err(e) => panic!("the gather failed otherwise: {e}"),
    }
    drop(client);
    // The cluster's only world went down with the rank, and the cluster with it: every process
    // ends, and no memfd, mapping or file of the move is left.
    let left = c.pids.wait_gone(T);
    assert!(left.is_empty(), "engine {victim_id} killed: processes left: {left:?}");
    assert!(!c.connection_file().exists(), "engine {victim_id} killed: connection file left");
    assert_eq!(dev_shm(), shm_before, "engine {victim_id} killed: nothing new in /dev/shm");
}
