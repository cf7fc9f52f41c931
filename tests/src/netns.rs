//! Several "hosts" on one machine: network namespaces joined by veth links, for tests of mpx
//! across hosts (the controller on one, MPI ranks on the others, Open MPI's TCP transport
//! between them).
//!
//! [`Hosts::create`] makes one namespace for the controller holding a bridge, and one per engine
//! host with a veth into that bridge. Every name carries the test's pid; the interface on each
//! host has the same name (as `eth1` would on a real cluster), so one `--interface` and one
//! `btl_tcp_if_include` fit every host. The addresses (`10.77.X.1` for the controller, `.2`, `.3`
//! ... for the hosts, a /24) exist only inside these namespaces. Dropping [`Hosts`] kills what
//! still runs in them (by the pids `ip netns pids` lists) and deletes them by name, also when
//! the test fails.

use std::{
    fs::File,
    net::{TcpListener, TcpStream},
    os::{fd::AsRawFd, unix::fs::PermissionsExt},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::TempDir;

/// The namespaces of one test and what mpirun needs to use them as hosts.
pub struct Hosts {
    /// The controller's namespace (it holds the bridge).
    pub controller_ns: String,
    /// The engine hosts: (namespace, address).
    pub hosts: Vec<(String, String)>,
    /// The interface name on every host (the bridge on the controller's).
    pub interface: String,
    /// The controller's address (on the bridge).
    pub controller_ip: String,
    created: Vec<String>,
    dir: TempDir,
}

/// Runs `ip ARGS`; the error says what failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Hosts {
    /// Creates the controller's namespace and `n` engine hosts.
    ///
    /// # Errors
    /// What failed, when the machine does not let us create namespaces (no `ip`, no
    /// CAP_NET_ADMIN); whatever was created by then is removed.
    pub fn create(n: usize) -> Result<Hosts, String> {
        // Names of this process's k-th set of hosts: tests of one binary run in parallel, and
        // each set has namespaces, an interface and a directory of its own.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let subnet = pid % 250 + 1;
        let dir = TempDir::new(&format!("netns-{k}"));
        let mut hosts = Hosts {
            controller_ns: format!("mpx-{pid}-{k}-ctl"),
            hosts: (0..n)
                .map(|i| (format!("mpx-{pid}-{k}-h{i}"), format!("10.77.{subnet}.{}", i + 2)))
                .collect(),
            interface: format!("mx{pid}x{k}"),
            controller_ip: format!("10.77.{subnet}.1"),
            created: Vec::new(),
            dir,
        };
        hosts.build()?;
        hosts.wait_reachable()?;
        hosts.write_agent().map_err(|e| format!("cannot write the rsh agent: {e}"))?;
        Ok(hosts)
    }

    /// Puts [`SLOTS`] ranks on the controller's host too (mpirun maps its own host first: they
    /// are the lowest ranks). mpirun starts them itself, in the controller's namespace, with the
    /// machine's host name, and they connect through the Unix socket.
    ///
    /// # Errors
    /// The hostfile cannot be written.
    pub fn with_ranks_on_controller_host(self) -> std::io::Result<Hosts> {
        let mut lines: Vec<String> =
            self.hosts.iter().map(|(_, addr)| format!("{addr} slots={SLOTS}\n")).collect();
        lines.push(format!("{} slots={SLOTS}\n", self.controller_ip));
        std::fs::write(self.hostfile(), lines.concat())?;
        Ok(self)
    }

    fn build(&mut self) -> Result<(), String> {
        let (ctl, ifname) = (self.controller_ns.clone(), self.interface.clone());
        let all = std::iter::once(ctl.clone()).chain(self.hosts.iter().map(|(ns, _)| ns.clone()));
        for ns in all.collect::<Vec<_>>() {
            ip(&["netns", "add", &ns])?;
            self.created.push(ns.clone());
            // Open MPI and mpx both use loopback inside a host.
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", &ctl, "link", "add", &ifname, "type", "bridge"])?;
        ip(&["-n", &ctl, "addr", "add", &format!("{}/24", self.controller_ip), "dev", &ifname])?;
        ip(&["-n", &ctl, "link", "set", &ifname, "up"])?;
        for (i, (ns, addr)) in self.hosts.iter().enumerate() {
            // The veth is created inside the two namespaces: nothing appears in ours.
            let port = format!("{ifname}p{i}");
            ip(&["link", "add", &ifname, "netns", ns, "type", "veth", "peer", "name", &port, "netns", &ctl])?;
            ip(&["-n", &ctl, "link", "set", &port, "master", &ifname])?;
            ip(&["-n", &ctl, "link", "set", &port, "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", &ifname])?;
            ip(&["-n", ns, "link", "set", &ifname, "up"])?;
        }
        Ok(())
    }

    /// Waits (bounded) until every host can open a TCP connection to the controller's host:
    /// links come up a moment after `ip link set up`, and mpirun's daemons connect back at once.
    fn wait_reachable(&self) -> Result<(), String> {
        let listener = {
            let _in = self.enter(&self.controller_ns);
            TcpListener::bind((self.controller_ip.as_str(), 0)).map_err(|e| format!("probe listener: {e}"))?
        };
        let target = listener.local_addr().map_err(|e| e.to_string())?;
        for (ns, _) in &self.hosts {
            let _in = self.enter(ns);
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_err() {
                if Instant::now() > deadline {
                    return Err(format!("{ns} cannot reach {target} after 10 s"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// mpirun's remote launch: `AGENT HOST COMMAND...` runs COMMAND in HOST's namespace, with a
    /// host name (a UTS namespace of its own, named after the network namespace: engines there
    /// are on another host for mpx, which then connects them over TCP, not through the
    /// controller's Unix socket) and a temporary directory of that host's own.
    ///
    /// Both keep each host's orted in a session directory of its own (`ompi.HOSTNAME.UID` under
    /// the temporary directory, see [`Hosts::session_dir`]). The namespaces share one kernel and
    /// one `/tmp`: with neither, every host's orted used the same directory, and in
    /// `orte_ess_base_orted_setup` → `rtc_hwloc` both wrote their hwloc topology into the same
    /// `jf.JOBFAMILY/hwloc.sm` at once, each through a mapping at an address of its own; one then
    /// followed the other's pointers and crashed in `hwloc_shmem_topology_write` (SIGSEGV; the
    /// `sh -c` around it exits with 139, which mpirun passes on), or lost the race to create the
    /// directory (`mkdir ... File exists`, mpirun exited with 213). With the other core busy: 3
    /// of 25 runs of t76 before; an MPI hello under this agent minus both, 62 of 621 (2 of them
    /// segfaults with that backtrace); with both, 0 of 366 runs of t76 and 0 of 750 of the hello.
    /// Separate hosts have separate `/tmp`s and names; so do these.
    fn write_agent(&self) -> std::io::Result<()> {
        let mut cases = String::new();
        for (ns, addr) in &self.hosts {
            cases.push_str(&format!("    {addr}) ns={ns} ;;\n"));
        }
        let agent = format!(
            "#!/bin/sh\n# mpirun's rsh agent: the host is the address of a test namespace\n\
             host=$1; shift\ncase $host in\n{cases}    *) echo \"netns-rsh: unknown host $host\" >&2; exit 1 ;;\n\
             esac\ntmp={tmp}/tmp-$ns\nmkdir -p \"$tmp\"\n\
             exec ip netns exec \"$ns\" unshare --uts /bin/sh -c \
             'hostname \"$0\" && exec env TMPDIR=\"$1\" OMPI_MCA_orte_tmpdir_base=\"$1\" /bin/sh -c \"$2\"' \
             \"$ns\" \"$tmp\" \"$*\"\n",
            tmp = self.dir.0.display()
        );
        std::fs::write(self.agent(), agent)?;
        std::fs::set_permissions(self.agent(), std::fs::Permissions::from_mode(0o755))?;
        let lines: Vec<String> =
            self.hosts.iter().map(|(_, addr)| format!("{addr} slots={SLOTS}\n")).collect();
        std::fs::write(self.hostfile(), lines.concat())
    }

    /// The Open MPI session directory of the orted on host `ns` while it runs (Open MPI 4's
    /// `TMPDIR/ompi.HOSTNAME.UID`, with the temporary directory and host name the agent gives).
    pub fn session_dir(&self, ns: &str) -> PathBuf {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        self.dir.0.join(format!("tmp-{ns}")).join(format!("ompi.{ns}.{uid}"))
    }

    /// The rsh agent script.
    pub fn agent(&self) -> PathBuf {
        self.dir.0.join("netns-rsh")
    }

    /// The hostfile: each host's address with [`SLOTS`] slots.
    pub fn hostfile(&self) -> PathBuf {
        self.dir.0.join("hostfile")
    }

    /// mpirun's arguments for a job on these hosts: the hostfile, the agent, and TCP (only) on
    /// the hosts' interface for both MPI's messages and mpirun's own control channel.
    pub fn mpirun_args(&self) -> Vec<String> {
        let mut args = vec!["--hostfile".to_string(), self.hostfile().to_string_lossy().into_owned()];
        for (name, value) in [
            ("plm_rsh_agent", self.agent().to_string_lossy().into_owned()),
            ("btl", "tcp,self".into()),
            ("btl_tcp_if_include", self.interface.clone()),
            ("oob_tcp_if_include", self.interface.clone()),
        ] {
            args.extend(["--mca".to_string(), name.to_string(), value]);
        }
        args
    }

    /// The namespace process `pid` lives in (`ip netns identify`), if one of ours.
    pub fn namespace_of(&self, pid: u32) -> Option<String> {
        let out = Command::new("ip").args(["netns", "identify", &pid.to_string()]).output().ok()?;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.created.contains(&name).then_some(name)
    }

    /// Moves the calling thread (only it: network namespaces are per thread) into namespace
    /// `ns` until the guard drops; the processes it starts meanwhile live there too.
    ///
    /// # Panics
    /// If the namespace cannot be entered.
    pub fn enter(&self, ns: &str) -> Entered {
        let home = File::open("/proc/thread-self/ns/net").expect("this thread's network namespace");
        let target = File::open(format!("/run/netns/{ns}")).expect("the test's namespace");
        // SAFETY: setns on valid namespace fds; it changes this thread's network namespace only.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into {ns}: {}", std::io::Error::last_os_error());
        Entered { home }
    }

    fn pids(&self, ns: &str) -> Vec<u32> {
        let out = Command::new("ip").args(["netns", "pids", ns]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }
}

/// Slots per host in the hostfile.
pub const SLOTS: u32 = 2;

/// The calling thread's stay in a namespace; it returns to its own on drop.
pub struct Entered {
    home: File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: `home` is the namespace this thread was in before `enter`.
        unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Whatever still runs in our namespaces was started by this test: SIGKILL it by pid,
        // then delete the namespaces (their links and addresses go with them).
        let deadline = Instant::now() + Duration::from_secs(5);
        for ns in &self.created {
            for pid in self.pids(ns) {
                eprintln!("netns: killing pid {pid} left in {ns}");
                // SAFETY: a process inside a namespace this test created.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        for ns in &self.created {
            while !self.pids(ns).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("netns: {e}");
            }
        }
    }
}
