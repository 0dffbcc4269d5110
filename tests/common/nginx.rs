//! nginx as a child process for end-to-end tests: its own `nginx.conf`, pid file, logs and
//! temporary folders inside the test's folder. Without nginx a test fails (never skips):
//! install `nginx-light` (scripts/test.sh does).
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// nginx as a child process
// ---------------------------------------------------------------------------------------

/// The nginx executable: on `PATH`, or where distributions put it. Fails the test (never
/// skips it) when there is none.
pub fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("nginx")).collect::<Vec<_>>())
        .unwrap_or_default();
    let known = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"].map(PathBuf::from);
    on_path.into_iter().chain(known).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "nginx is not installed, and this test runs a real nginx in front of Portcullis's forward-auth endpoint. \
             Install it: `sudo apt-get install nginx-light` (Debian/Ubuntu; scripts/test.sh does this in CI)"
        )
    })
}

/// `nginx -V`: the version line and the configure arguments.
pub fn nginx_build(binary: &Path) -> String {
    let out =
        Command::new(binary).arg("-V").output().unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    // nginx prints its version and build to stderr.
    format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout))
}

/// `(major, minor, patch)` from `nginx version: nginx/1.22.1`.
pub fn nginx_version(build: &str) -> (u32, u32, u32) {
    let version = build.split("nginx/").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or("0.0.0");
    let mut parts = version.split('.').map(|n| n.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// nginx in the foreground, one process, everything it writes inside `dir`; killed on drop.
pub struct Nginx {
    child: Option<Child>,
    /// The first of its ports: the one the test sends to.
    pub port: u16,
    /// Every port it listens on, as given to the config.
    pub ports: Vec<u16>,
    pub dir: PathBuf,
}

/// How many times nginx is started on fresh ports when one was taken meanwhile.
const BIND_ATTEMPTS: usize = 5;

/// A loopback port that was free a moment ago. nginx cannot listen on port 0 (it refuses
/// `listen 127.0.0.1:0`) nor say which port it got, so its ports are picked in advance:
/// another process may take one between this check and nginx's bind, and
/// [`Nginx::start`] then starts it again on new ports (it reads "Address already in use"
/// in nginx's log). Portcullis's own doors never need this: they bind port 0 and report.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

impl Nginx {
    /// Writes `dir/nginx.conf` (the `http` block's `server`s are `servers(ports)`, with
    /// `count` loopback ports to listen on) and starts nginx, waiting until it listens on
    /// all of them. A port taken between picking and binding is retried on new ports.
    pub fn start(dir: &Path, count: usize, servers: impl Fn(&[u16]) -> String) -> Nginx {
        let mut attempt = 1;
        loop {
            let mut ports: Vec<u16> = Vec::with_capacity(count);
            while ports.len() < count {
                // Distinct: two servers on one port would silently share a socket.
                let port = free_port();
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
            let text = servers(&ports);
            match Nginx::start_on(dir, ports, &text) {
                Ok(nginx) => return nginx,
                Err(log) if attempt < BIND_ATTEMPTS && log.contains("Address already in use") => attempt += 1,
                Err(log) => panic!("nginx did not start (attempt {attempt}):\n{log}"),
            }
        }
    }

    /// One start on `ports`: `Err` with nginx's log when it exits before listening.
    fn start_on(dir: &Path, ports: Vec<u16>, servers: &str) -> Result<Nginx, String> {
        let binary = nginx_binary();
        let build = nginx_build(&binary);
        assert!(
            build.contains("http_auth_request_module"),
            "{} was built without the auth_request module; install Debian's `nginx-light` \
             (`sudo apt-get install nginx-light`), which has it:\n{build}",
            binary.display()
        );
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).expect("nginx dir");
        // A retry starts afresh: no pid file or error log of the attempt before.
        for stale in ["nginx.pid", "error.log"] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        let d = dir.display();
        let conf = format!(
            r"# Generated by tests/nginx.rs.
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

{servers}
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut command = Command::new(&binary);
        command.arg("-p").arg(format!("{d}/")).arg("-c").arg(&conf_path);
        // `-e` (nginx ≥ 1.19.5) keeps even the start-up error log out of /var/log/nginx.
        if nginx_version(&build) >= (1, 19, 5) {
            command.arg("-e").arg(dir.join("error.log"));
        }
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("nginx stderr log");
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let pid = child.id().to_string();
        let mut nginx = Nginx { child: Some(child), port: ports[0], ports, dir };
        // nginx writes its pid file once every listening socket is open: a port that
        // answers before that may be another process's, so the pid file is the signal.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(nginx.dir.join("nginx.pid")).is_ok_and(|p| p.trim() == pid) {
            if let Some(status) = nginx.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("nginx exited with {status}:\n{}", nginx.log()));
            }
            assert!(Instant::now() < deadline, "nginx never listened on {:?}:\n{}", nginx.ports, nginx.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        for port in &nginx.ports {
            assert!(
                TcpStream::connect(("127.0.0.1", *port)).is_ok(),
                "nginx does not answer on {port}:\n{}",
                nginx.log()
            );
        }
        Ok(nginx)
    }

    /// What nginx logged (stderr and its error log).
    pub fn log(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|name| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
