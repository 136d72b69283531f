//! kubectl sessions tests drive by hand: a pseudo-terminal for `exec -it`, a background
//! `port-forward`, and a plain HTTP/1.0 GET through the forwarded port.

use super::TestServer;
use std::time::{Duration, Instant};

/// Runs kubectl with a pseudo-terminal as stdin/stdout, types `input`, and returns its exit
/// code and everything it printed.
pub fn kubectl_in_pty(server: &TestServer, args: &[&str], input: &[u8]) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut cmd = std::process::Command::new("/opt/skiff-test/bin/kubectl");
    cmd.arg("--kubeconfig")
        .arg(server.kubeconfig_path())
        .args(args);
    cmd.env("HOME", server.home());
    cmd.stdin(std::process::Stdio::from(
        pty.slave.as_fd().try_clone_to_owned().unwrap(),
    ));
    cmd.stdout(std::process::Stdio::from(
        pty.slave.as_fd().try_clone_to_owned().unwrap(),
    ));
    cmd.stderr(std::process::Stdio::from(
        pty.slave.as_fd().try_clone_to_owned().unwrap(),
    ));
    let mut child = cmd.spawn().unwrap();
    // Our copies of the slave must close, or the reader never sees the end.
    drop(cmd);
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let out = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    // Give kubectl time to put the terminal in raw mode and connect.
    std::thread::sleep(Duration::from_millis(1500));
    master.write_all(input).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("pty: kubectl exited {status:?}");
    drop(master);
    (status.code(), out.join().unwrap())
}

/// `kubectl port-forward` in the background with extra environment; returns it and the
/// local port it reports.
pub fn port_forward(
    server: &TestServer,
    pod: &str,
    remote: u16,
    env: &[(&str, &str)],
) -> (super::process::Background, u16) {
    let mut cmd = std::process::Command::new("/opt/skiff-test/bin/kubectl");
    cmd.arg("--kubeconfig")
        .arg(server.kubeconfig_path())
        .args(["port-forward", pod, &format!(":{remote}")])
        .env("HOME", server.home())
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let prefix = server.files_dir().join(format!("pf-{n}"));
    let mut bg = super::process::Background::spawn(cmd, &prefix);
    bg.wait_for_stdout("Forwarding from", Duration::from_secs(20), |s| {
        s.contains("Forwarding from 127.0.0.1:")
    });
    let out = bg.stdout();
    let port = out
        .split("Forwarding from 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("a local port");
    (bg, port)
}

/// GET `path` from 127.0.0.1:`port` over HTTP/1.0; the whole response.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
