//! A real `redis-server` for tests, and a minimal RESP client written apart
//! from ratecard's own encoder and decoder.
//!
//! [`Server::start`] runs `redis-server` on 127.0.0.1, on a free port, with
//! no persistence, in a scratch directory; dropping the [`Server`] kills it
//! by pid and removes the directory, also when the test panics. Tests that
//! need it are `#[ignore = "needs redis-server"]`; CI runs them with
//! `cargo test -p ratecard --test redis_script -- --include-ignored`.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running `redis-server`, stopped when dropped.
pub struct Server {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

static STARTED: AtomicU32 = AtomicU32::new(0);

impl Server {
    /// A standalone server.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server with extra `redis-server` arguments (e.g. `--cluster-enabled yes`).
    pub fn start_with(extra: &[&str]) -> Server {
        let mut last = String::new();
        // A port found free can be taken before the server binds it: retry.
        for _ in 0..5 {
            match Server::try_start(extra) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    fn try_start(extra: &[&str]) -> Result<Server, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ratecard-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(["--logfile", "redis.log", "--daemonize", "no"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server ({e}); apt-get install redis-server"))?;
        // From here on, Drop stops it whatever happens.
        let mut server = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server.dir.join("redis.log")).unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            if let Ok(mut c) = Conn::try_open(port) {
                if c.cmd(&[b"PING"]) == Value::Simple(b"PONG".to_vec()) {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err("no PONG within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new connection.
    pub fn conn(&self) -> Conn {
        Conn::try_open(self.port).expect("connect to redis-server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RESP value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(v) => *v,
            other => panic!("not an integer: {other:?}"),
        }
    }

    pub fn bulk(&self) -> Option<Vec<u8>> {
        match self {
            Value::Bulk(b) => b.clone(),
            other => panic!("not a bulk string: {other:?}"),
        }
    }

    pub fn array(&self) -> Vec<Value> {
        match self {
            Value::Array(Some(a)) => a.clone(),
            other => panic!("not an array: {other:?}"),
        }
    }
}

/// A parsed value, the byte ranges of its elements if it is an array, and
/// the bytes it took.
pub type Parsed = (Value, Vec<(usize, usize)>, usize);

/// One value parsed from the start of `b`; `None` if `b` holds less.
pub fn parse(b: &[u8]) -> Option<Parsed> {
    fn line(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let rest = b.get(at..)?;
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        Some((&rest[..end], at + end + 2))
    }
    fn num(s: &[u8]) -> i64 {
        std::str::from_utf8(s).unwrap().parse().unwrap()
    }
    fn value(b: &[u8], at: usize) -> Option<(Value, usize)> {
        let kind = *b.get(at)?;
        let (l, next) = line(b, at + 1)?;
        Some(match kind {
            b'+' => (Value::Simple(l.to_vec()), next),
            b'-' => (Value::Error(l.to_vec()), next),
            b':' => (Value::Int(num(l)), next),
            b'$' => {
                let n = num(l);
                if n < 0 {
                    (Value::Bulk(None), next)
                } else {
                    let end = next + n as usize;
                    b.get(end + 1)?;
                    (Value::Bulk(Some(b[next..end].to_vec())), end + 2)
                }
            }
            b'*' => {
                let n = num(l);
                if n < 0 {
                    (Value::Array(None), next)
                } else {
                    let mut items = Vec::new();
                    let mut at = next;
                    for _ in 0..n {
                        let (v, after) = value(b, at)?;
                        items.push(v);
                        at = after;
                    }
                    (Value::Array(Some(items)), at)
                }
            }
            other => panic!("unexpected RESP type byte {other}"),
        })
    }
    let (v, end) = value(b, 0)?;
    let mut spans = Vec::new();
    if let Value::Array(Some(items)) = &v {
        let (_, mut at) = line(b, 1)?;
        for _ in items {
            let (_, after) = value(b, at)?;
            spans.push((at, after));
            at = after;
        }
    }
    Some((v, spans, end))
}

/// `args` as a RESP command.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A connection with a 10 s read timeout.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn try_open(port: u16) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Send bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to redis-server");
    }

    /// The raw bytes of the next reply.
    pub fn read_raw(&mut self) -> Vec<u8> {
        loop {
            if let Some((_, _, end)) = parse(&self.buf) {
                return self.buf.drain(..end).collect();
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("redis-server closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read from redis-server: {e}"),
            }
        }
    }

    /// Send a command, return its reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Value {
        self.send(&encode(args));
        parse(&self.read_raw()).unwrap().0
    }

    /// Send raw command bytes, return the raw reply.
    pub fn raw(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.send(bytes);
        self.read_raw()
    }
}
