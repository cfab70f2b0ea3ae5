//! Real `redis-server`s for tests: standalone or a three-master Cluster,
//! on 127.0.0.1, free ports, no persistence, each in a scratch directory;
//! killed by pid and cleaned up when dropped, also when a test fails.
//! Administration goes through `redis-cli`, apart from the code under test.
//!
//! Also used by `ratecard-rls`'s tests (`#[path]`), so it needs nothing but
//! std.
#![allow(dead_code, reason = "each test file uses part of this module")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static STARTED: AtomicU32 = AtomicU32::new(0);

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One `redis-server`; [`Redis::kill`] and [`Redis::restart`] keep its port.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Redis {
    /// A standalone server.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// A server with more `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Redis {
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ratecard-redis-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let mut r = Redis {
            child: None,
            port: 0,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // A port found free can be taken before the server binds it: retry.
        for _ in 0..5 {
            r.port = free_port();
            if r.spawn().is_ok() {
                return r;
            }
        }
        panic!("redis-server did not start: {}", r.log());
    }

    fn spawn(&mut self) -> Result<(), ()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "redis.log", "--daemonize", "no"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(());
            }
            if ping(self.port, Duration::from_secs(1)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(())
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stop the server (SIGKILL, by pid) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..20 {
            if self.spawn().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on {}: {}",
            self.port,
            self.log()
        );
    }

    /// `redis-cli` with `args`; its standard output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self
            .cli_command(args)
            .stdout(Stdio::piped())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `redis-cli` with `args`, running; the caller waits for it.
    pub fn cli_spawn(&self, args: &[&str]) -> Child {
        self.cli_command(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("run redis-cli")
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Whether it answers `PING` within `wait` (not while `DEBUG SLEEP`s).
    pub fn answers_within(&self, wait: Duration) -> bool {
        ping(self.port, wait)
    }

    /// The keys under `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let out = self.cli(&["--scan", "--pattern", pattern]);
        out.lines().map(str::to_string).collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a server answers `PING` on `port` within `wait`.
fn ping(port: u16, wait: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(wait));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Three masters, every slot assigned.
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let nodes: Vec<Redis> = (0..3)
            .map(|_| {
                Redis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(Redis::addr).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let status = nodes[0]
            .cli_command(&args)
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Cluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster
            .nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") && cluster.agree(n))
        {
            assert!(Instant::now() < deadline, "the cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// Whether `n` knows every node.
    fn agree(&self, n: &Redis) -> bool {
        n.cli(&["CLUSTER", "NODES"])
            .lines()
            .filter(|l| l.contains("master"))
            .count()
            == self.nodes.len()
    }

    /// The node id of the server on `port`.
    pub fn id(&self, port: u16) -> String {
        self.node(port).cli(&["CLUSTER", "MYID"])
    }

    pub fn node(&self, port: u16) -> &Redis {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
    }

    /// Which node serves which slots, as node `asked` sees it: `(first,
    /// last, port)` ranges.
    pub fn slots(&self, asked: &Redis) -> Vec<(u16, u16, u16)> {
        let mut ranges = Vec::new();
        for line in asked.cli(&["CLUSTER", "NODES"]).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port: u16 = f[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .expect("a node address");
            for range in f.iter().skip(8).filter(|r| !r.starts_with('[')) {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                ranges.push((lo.parse().unwrap(), hi.parse().unwrap(), port));
            }
        }
        ranges
    }
}

/// The port serving `slot` in `ranges` (from [`Cluster::slots`]).
pub fn owner(ranges: &[(u16, u16, u16)], slot: u16) -> u16 {
    ranges
        .iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
        .map(|r| r.2)
        .unwrap_or_else(|| panic!("no node serves slot {slot}"))
}
