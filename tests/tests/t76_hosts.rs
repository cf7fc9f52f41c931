//! mpx across hosts: the controller on one "host" and the MPI ranks on two others, each a
//! network namespace of its own (built by the harness's `netns` module, removed by name at the
//! end). mpirun starts its daemons on the other hosts through an rsh agent that enters their
//! namespace; the ranks talk over Open MPI's TCP transport and reach the controller at the
//! address its connection file gives (`--ip 0.0.0.0 --interface NAME`: listen everywhere,
//! advertise the interface's address).
//!
//! Needs root (CAP_NET_ADMIN) for `ip netns add`; without it the test says so and skips.

use std::time::Duration;

use mpx_client::{Dtype, Targets};
use mpx_tests::{
    arrays::{describe, rows, sample},
    mpx_cmd,
    netns::{Hosts, SLOTS},
    run_with_timeout, serial, stderr, stdout, Cluster, Kernel, TempDir,
};

const T: Duration = Duration::from_secs(120);

/// A cluster of `n` ranks on `hosts` (the caller is in the controller's namespace): the
/// controller on the wildcard address, advertising the hosts' interface.
fn start_on(hosts: &Hosts, kernel: Kernel, tag: &str, n: u32) -> Cluster {
    let mut extra = vec!["--ip".to_string(), "0.0.0.0".into(), "--interface".into(), hosts.interface.clone()];
    extra.push("--".into());
    extra.extend(hosts.mpirun_args());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    Cluster::start(kernel, tag, n, &extra)
}

#[test]
fn t76_psum_and_data_across_three_hosts() {
    let hosts = match Hosts::create(2) {
        Ok(hosts) => hosts,
        Err(e) => {
            eprintln!("SKIPPED t76: cannot create network namespaces on this machine ({e}); needs root");
            return;
        }
    };
    let n = SLOTS * hosts.hosts.len() as u32;
    // This thread (and so every process the harness starts) is on the controller's host.
    let _on_controller_host = hosts.enter(&hosts.controller_ns);
    let c = start_on(&hosts, Kernel::Rhai, "hosts", n);

    let (address, _) = c.address_and_key();
    assert!(
        address.starts_with(&format!("{}:", hosts.controller_ip)),
        "the connection file gives the interface's address, not 0.0.0.0: {address}"
    );
    assert_eq!(hosts.namespace_of(c.pids.controller).as_deref(), Some(hosts.controller_ns.as_str()));
    let mut placed: Vec<String> =
        c.pids.engines.iter().map(|&pid| hosts.namespace_of(pid).unwrap_or_else(|| "?".into())).collect();
    placed.sort();
    let mut expected: Vec<String> =
        hosts.hosts.iter().flat_map(|(ns, _)| std::iter::repeat_n(ns.clone(), SLOTS as usize)).collect();
    expected.sort();
    assert_eq!(placed, expected, "the ranks live on the engine hosts, {SLOTS} each");
    // Each host's orted has a session directory of its own, as on separate machines (a shared
    // one crashed orted now and then: see `Hosts::session_dir` and the agent in netns.rs).
    for (ns, _) in &hosts.hosts {
        let dir = hosts.session_dir(ns);
        assert!(dir.is_dir(), "the orted on {ns} has no session directory of its own ({})", dir.display());
    }
    // Each engine host has a name of its own (the engines there reach the controller by TCP, not
    // through its Unix socket, which only peers on its own host use).
    let info = c.client().info(T).unwrap();
    let mut names: Vec<String> = info.engines.iter().map(|e| e.hostname.clone()).collect();
    names.sort();
    assert_eq!(names, expected, "engines report their host's name");

    c.check_psum(n);

    // Arrays cross hosts: to every engine and back, split over them and gathered.
    let client = c.client();
    let all = client.view(Targets::All);
    let a = sample(Dtype::F64, &[100_000, 4], 76);
    all.push_sync("x", &a, T).unwrap();
    for (id, back) in all.pull_sync("x", T).unwrap().iter().enumerate() {
        assert!(back == &a, "pull from engine {id}: {} != {}", describe(back), describe(&a));
    }
    all.scatter_sync("y", &a, T).unwrap();
    let parts = all.pull_sync("y", T).unwrap();
    let per = 100_000 / n as usize;
    for (r, part) in parts.iter().enumerate() {
        assert!(part == &rows(&a, r * per, (r + 1) * per), "scatter to engine {r}");
    }
    // A collective over the scattered parts: every engine counts all the elements.
    let counts = all.execute_sync("allreduce(len(y), SUM)", T).unwrap();
    for r in &counts {
        assert_eq!(r.outcome.value.as_deref(), Some("400000"), "{counts:?}");
    }
    let whole = all.gather_sync("y", T).unwrap();
    assert!(whole == a, "gather: {} != {}", describe(&whole), describe(&a));
    drop(client);

    let pids = c.pids.clone();
    c.stop();
    assert!(pids.alive().is_empty(), "left running: {:?}", pids.alive());
}

#[test]
fn t76_a_wildcard_address_needs_an_interface() {
    let _guard = serial();
    let home = TempDir::new("wildcard");
    let mut cmd = mpx_cmd(&home.0);
    cmd.args(["controller", "start", "--ip", "0.0.0.0"]);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(!out.status.success(), "a controller on 0.0.0.0 with nothing to advertise started");
    assert!(stderr(&out).contains("--interface NAME"), "{}", stderr(&out));
    assert!(!home.0.join("cluster-default.json").exists());

    // With an interface, its address goes into the connection file.
    let mut cmd = mpx_cmd(&home.0);
    cmd.args(["controller", "start", "--ip", "0.0.0.0", "--interface", "lo", "--daemonize"]);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = std::fs::read_to_string(home.0.join("cluster-default.json")).unwrap();
    let info: mpx_messages::ConnectionInfo = serde_json::from_str(&text).unwrap();
    let mut stop = mpx_cmd(&home.0);
    stop.args(["cluster", "stop"]);
    let stopped = run_with_timeout(stop, Duration::from_secs(30));
    assert!(info.address.starts_with("127.0.0.1:"), "{}", info.address);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert!(!mpx_controller::files::pid_alive(info.controller_pid), "the controller outlived the stop");
}

#[test]
fn t76_a_push_reaches_ranks_here_through_a_memfd_and_ranks_elsewhere_by_mpi() {
    let hosts =
        match Hosts::create(1).and_then(|h| h.with_ranks_on_controller_host().map_err(|e| e.to_string())) {
            Ok(hosts) => hosts,
            Err(e) => {
                eprintln!("SKIPPED t76: cannot create network namespaces on this machine ({e}); needs root");
                return;
            }
        };
    let n = 2 * SLOTS;
    let _on_controller_host = hosts.enter(&hosts.controller_ns);
    let c = start_on(&hosts, Kernel::Python, "mixed", n);
    let client = c.client();
    assert!(client.is_local());
    let info = client.info(T).unwrap();
    let here = info.engines.iter().filter(|e| e.local).count();
    assert_eq!(here, SLOTS as usize, "{SLOTS} ranks on the controller's host, {SLOTS} elsewhere: {info:?}");

    // One push to all four: no array bytes cross the controller's links (ranks 0 and 1, here,
    // map the memfd, rank 0 broadcasts it to ranks 2 and 3 by MPI); every rank has the array.
    let all = client.view(Targets::All);
    let a = sample(Dtype::F64, &[100_000, 4], 761);
    let sent =
        |info: &mpx_messages::ClusterInfo| info.engines.iter().map(|e| e.bytes_sent).collect::<Vec<_>>();
    let before = sent(&info);
    all.push_sync("x", &a, T).unwrap();
    let after = sent(&client.info(T).unwrap());
    for (id, (b, a2)) in before.iter().zip(&after).enumerate() {
        assert!(a2 - b < 100_000, "engine {id} was sent {} bytes: the array crossed its link", a2 - b);
    }
    for (id, back) in all.pull_sync("x", T).unwrap().iter().enumerate() {
        assert!(back == &a, "pull from engine {id}: {} != {}", describe(back), describe(&a));
    }
    // The ranks here hold it in the memfd's mapping, those elsewhere in memory of their own;
    // a collective over it works on the whole world.
    let code = "from mpi4py import MPI\nat = x.ctypes.data\n\
                mapped = any('/memfd:' in l and int(l.split('-')[0], 16) <= at < int(l.split()[0].split('-')[1], 16) \
                for l in open('/proc/self/maps'))\n(mapped, MPI.COMM_WORLD.allreduce(x.size))";
    let seen = all.execute_sync(code, T).unwrap();
    for (r, e) in seen.iter().zip(&info.engines) {
        let expected = format!("({}, 1600000)", if e.local { "True" } else { "False" });
        assert_eq!(r.outcome.value.as_deref(), Some(expected.as_str()), "engine {}: {seen:?}", e.id);
    }
    assert!(info.engines[0].local, "mpirun puts its own host's ranks first: {info:?}");
    // A gather to this client from ranks on both hosts: the root (engine 0) is here and gathers
    // into a memfd; the ranks elsewhere cannot open it to write their rows, so every rank sends
    // its rows by MPI into it instead.
    let whole = all.gather_sync("x", T).unwrap();
    assert_eq!(whole.shape(), [4 * 100_000, 4]);
    for part in 0..4 {
        assert!(rows(&whole, part * 100_000, (part + 1) * 100_000) == a, "part {part} of the gather");
    }
    // Over TCP, 8 MB to ranks on two hosts: the root cannot share its memfd with the ranks of
    // the other host (their network namespace is another host's), so every rank gets the
    // array by MPI, as before, into memory of its own; so do the rows of a scatter.
    let (address, key) = c.address_and_key();
    let tcp =
        mpx_client::Client::connect_with(&address, key, "mixed", c.connection_file()).expect("TCP client");
    assert!(!tcp.is_local());
    let over_tcp = tcp.view(Targets::All);
    let big = sample(Dtype::F64, &[1 << 20], 762);
    over_tcp.push_sync("big", &big, T).unwrap();
    for (id, back) in over_tcp.pull_sync("big", T).unwrap().iter().enumerate() {
        assert!(back == &big, "engine {id}: {} != {}", describe(back), describe(&big));
    }
    let held = over_tcp
        .execute_sync(
            "at = big.ctypes.data\nany('mpx-held' in l and int(l.split('-')[0], 16) <= at < \
             int(l.split()[0].split('-')[1], 16) for l in open('/proc/self/maps'))",
            T,
        )
        .unwrap();
    assert!(held.iter().all(|r| r.outcome.value.as_deref() == Some("False")), "{held:?}");
    over_tcp.scatter_sync("rows", &big, T).unwrap();
    for (r, part) in over_tcp.pull_sync("rows", T).unwrap().iter().enumerate() {
        assert!(part == &rows(&big, r << 18, (r + 1) << 18), "scatter to engine {r}");
    }
    // A gather of 8 MB from both hosts: the MPI pieces, as before.
    let whole = over_tcp.gather_sync("big", T).unwrap();
    assert_eq!(whole.shape(), [4 << 20]);
    for part in 0..4 {
        let n = big.data().len();
        assert!(whole.data()[part * n..(part + 1) * n] == big.data()[..], "part {part} of the gather");
    }
    drop(tcp);
    drop(client);
    let pids = c.pids.clone();
    c.stop();
    assert!(pids.alive().is_empty(), "left running: {:?}", pids.alive());
}
