//! A client with the wrong key is refused clearly, and the cluster keeps serving others.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use mpx_client::EngineId;
use mpx_tests::{out_values, stderr, Cluster, Kernel};

#[test]
fn t20_wrong_key_is_refused_with_a_clear_message() {
    let c = Cluster::start(Kernel::Rhai, "key", 4, &[]);
    let text = std::fs::read_to_string(c.connection_file()).unwrap();
    let mut info: serde_json::Value = serde_json::from_str(&text).unwrap();
    info["key"] = serde_json::Value::String("ab".repeat(32));
    let bad = c.home.join("bad-key.json");
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&bad).unwrap();
    f.write_all(info.to_string().as_bytes()).unwrap();
    drop(f);

    let out = c.mpx(&["px", "--cluster-id", bad.to_str().unwrap(), "rank"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("authentication failed"), "{}", stderr(&out));

    // The connection file was created 0600; a readable key file is refused.
    let mode = std::fs::metadata(c.connection_file()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = c.mpx(&["px", "--cluster-id", bad.to_str().unwrap(), "rank"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("must be 0600"), "{}", stderr(&out));

    // The controller still serves the right key.
    assert_eq!(out_values(&c.px("rank")).len(), 4);
    c.stop();
}

#[test]
fn t21_an_engine_refuses_a_connection_file_others_can_read() {
    let c = Cluster::start(Kernel::Rhai, "engkey", 2, &[]);
    let open = c.home.join("open.json");
    std::fs::copy(c.connection_file(), &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = std::process::Command::new("mpirun");
    cmd.args(["-n", "1"])
        .arg(mpx_tests::bin("mpx-engine"))
        .args(["--kernel", "rhai"])
        .args(["--connect", open.to_str().unwrap(), "--wait", "1"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    let out = mpx_tests::run_with_timeout(cmd, std::time::Duration::from_secs(60));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("must be 0600"), "{}", stderr(&out));
    // It did not join.
    assert_eq!(c.client().ids().unwrap(), vec![EngineId(0), EngineId(1)]);
    c.stop();
}
