//! The controller's Unix socket: peers on its host (clients and engines) connect there instead
//! of TCP, with the same handshake; the socket is 0600 in the 0700 `$MPX_HOME`; `MPX_SHM=0`
//! keeps every connection on TCP; a wrong key is refused there as over TCP; the socket file
//! goes with the cluster.

use std::{ffi::OsStr, os::unix::fs::PermissionsExt, path::Path, time::Duration};

use mpx_client::{Client, ClientError, Targets};
use mpx_messages::{connection::read_connection_file, Kernel, Key};
use mpx_tests::{mpx_cmd, run_with_timeout, stderr, stdout, Cluster};

const T: Duration = Duration::from_secs(60);
const SAYS_LOCAL: &str = "connecting through the controller's Unix socket";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// What the engines logged, all of them.
fn engine_logs(c: &Cluster) -> String {
    let dir = mpx_messages::connection::log_dir(&c.connection_file());
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("log dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("engine-") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text
}

/// `mpx -vv px` from this host, with `env`: its stderr (where the client logs how it connects).
fn px_log(c: &Cluster, env: &[(&str, &str)]) -> String {
    let mut cmd = mpx_cmd(&c.home);
    cmd.args(["-vv", "px", "1"]).envs(env.iter().copied()).env("MPX_LOG", "mpx_client=debug");
    let out = run_with_timeout(cmd, T);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stderr(&out)
}

#[test]
fn t24_peers_on_the_controllers_host_use_its_unix_socket_and_nothing_else_can() {
    let c = Cluster::start(Kernel::Rhai, "local", 2, &[]);
    let info = read_connection_file(&c.connection_file()).expect("connection file");
    let socket = info.unix.clone().expect("the connection file names the Unix socket");
    assert_eq!(socket.parent(), Some(c.home.as_path()), "the socket is in $MPX_HOME");
    assert_eq!(mode(&socket), 0o600, "socket mode");
    assert_eq!(mode(&c.home), 0o700, "$MPX_HOME mode");
    assert_eq!(info.host.as_deref(), Some(mpx_messages::connection::hostname().as_str()));

    // Clients and engines of this host come through it.
    let client = c.client();
    assert!(client.is_local(), "a client on the controller's host uses the Unix socket");
    let results = client.view(Targets::All).execute_sync("40 + 2", T).expect("a cell");
    assert!(results.iter().all(|r| r.outcome.value.as_deref() == Some("42")), "{results:?}");
    assert_eq!(engine_logs(&c).matches(SAYS_LOCAL).count(), 2, "both engines: {}", engine_logs(&c));
    assert!(px_log(&c, &[]).contains(SAYS_LOCAL));
    // MPX_SHM=0: TCP, and the same answers.
    assert!(!px_log(&c, &[("MPX_SHM", "0")]).contains(SAYS_LOCAL));

    // The same handshake as over TCP: a wrong key is refused.
    let wrong =
        Client::connect_local(&socket, Key::new(b"not the key".to_vec()), "local", c.connection_file());
    assert!(matches!(wrong, Err(ClientError::Rejected)), "{wrong:?}");
    // The cluster is unharmed.
    assert_eq!(client.view(Targets::All).execute_sync("1", T).expect("a cell").len(), 2);
    drop(client);

    let out = c.mpx(&["cluster", "stop"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(c.pids.wait_gone(T).is_empty(), "cluster processes left");
    assert!(!socket.exists(), "the socket file went with the cluster");
}

#[test]
fn t24_with_mpx_shm_0_engines_use_tcp() {
    let c = Cluster::start_env(Kernel::Rhai, "tcp-only", 2, &[], &[("MPX_SHM", OsStr::new("0"))]);
    let results = c.client().view(Targets::All).execute_sync("1 + 1", T).expect("a cell");
    assert_eq!(results.len(), 2);
    assert!(!engine_logs(&c).contains(SAYS_LOCAL), "{}", engine_logs(&c));
    c.stop();
}
