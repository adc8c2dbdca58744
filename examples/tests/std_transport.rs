//! The other-transport example runs the whole write-and-read flow against its embedded
//! sandbox: the core driven over `std::net`, with none of the SDK's drivers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_core_over_std_net_pushes_and_reads_back_the_same_bytes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_std_transport"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a hang fails the test instead of holding CI.
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("std_transport did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for step in [
        "1. Authorized the write contract",
        "3. Pushed 42 bytes",
        "4. Authorized the read contract for the same user",
        "0 failed), sync completed",
        "came back over std::net identical to the 42 bytes pushed",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
}
