//! Connections: one small pool per Redis node, and which node holds which
//! Cluster slot (learnt from `MOVED`).

use std::collections::HashMap;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Cause;

/// A reply longer than this is not the script's (its replies are a few
/// hundred bytes): the server is sending something else.
const MAX_REPLY: usize = 64 * 1024;

/// Nodes remembered at most; past that the map starts again, so a server
/// that redirects everywhere cannot make it grow.
const MAX_NODES: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Addr {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Addr {
    /// `host:port`, `[v6]:port`, or `v6:port` as Redis writes IPv6 in
    /// `MOVED`; an empty host is `default_host` (Redis's "same host").
    pub(crate) fn parse(text: &str, default_host: &str) -> Option<Addr> {
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse().ok().filter(|&p| p != 0)?;
        let host = host.strip_prefix('[').unwrap_or(host);
        let host = host.strip_suffix(']').unwrap_or(host);
        let host = if host.is_empty() { default_host } else { host };
        if host.is_empty() || host == "?" {
            return None;
        }
        Some(Addr {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One TCP connection and its buffers.
pub(crate) struct Conn {
    stream: TcpStream,
    /// The command to send.
    pub(crate) out: Vec<u8>,
    /// Bytes received and not yet taken by a reply.
    inp: Vec<u8>,
    /// Taken from the idle pool (it may have gone stale), not just opened.
    pub(crate) reused: bool,
}

impl Conn {
    async fn open(addr: &Addr) -> io::Result<Conn> {
        let stream = TcpStream::connect((addr.host.as_str(), addr.port)).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            out: Vec::with_capacity(512),
            inp: Vec::with_capacity(512),
            reused: false,
        })
    }

    pub(crate) async fn send(&mut self) -> Result<(), Cause> {
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|e| Cause::Io(e.kind()))
    }

    /// Read until `decode` finds a whole reply in the bytes received
    /// (`None`: not yet); it returns the reply and the bytes it took.
    pub(crate) async fn read<T>(
        &mut self,
        mut decode: impl FnMut(&[u8]) -> Option<(T, usize)>,
    ) -> Result<T, Cause> {
        loop {
            if let Some((reply, used)) = decode(&self.inp) {
                self.inp.drain(..used.min(self.inp.len()));
                return Ok(reply);
            }
            if self.inp.len() >= MAX_REPLY {
                return Err(Cause::Protocol);
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| Cause::Io(e.kind()))?;
            let got = chunk.get(..n).unwrap_or_default();
            if got.is_empty() {
                return Err(Cause::Io(io::ErrorKind::UnexpectedEof));
            }
            self.inp.extend_from_slice(got);
        }
    }

    /// Nothing received beyond the replies taken: ready for the next call.
    pub(crate) fn in_step(&self) -> bool {
        self.inp.is_empty()
    }
}

/// One node's pool: at most `permits` connections in use or idle.
pub(crate) struct Node {
    pub(crate) addr: Addr,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

/// A connection lent by a node; dropped (closed) unless released.
pub(crate) struct Lease {
    conn: Conn,
    node: Arc<Node>,
    _permit: OwnedSemaphorePermit,
}

impl Deref for Lease {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl Lease {
    /// Give the connection back for the next call, if it is in step.
    pub(crate) fn release(self) {
        if self.conn.in_step() {
            lock(&self.node.idle).push(self.conn);
        }
    }
}

impl Node {
    fn new(addr: Addr, connections: usize) -> Node {
        Node {
            addr,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(connections)),
        }
    }

    /// A connection: an idle one unless `fresh`, else a new one (counted in
    /// `opened`). Waits while every connection is in use.
    pub(crate) async fn lease(
        self: &Arc<Self>,
        fresh: bool,
        opened: &AtomicU64,
    ) -> Result<Lease, Cause> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Cause::Io(io::ErrorKind::Other))?;
        let idle = if fresh { None } else { lock(&self.idle).pop() };
        let conn = match idle {
            Some(mut c) => {
                c.reused = true;
                c
            }
            None => {
                opened.fetch_add(1, Ordering::Relaxed);
                Conn::open(&self.addr)
                    .await
                    .map_err(|e| Cause::Io(e.kind()))?
            }
        };
        Ok(Lease {
            conn,
            node: Arc::clone(self),
            _permit: permit,
        })
    }

    /// Close the idle connections: after one failed, the others likely
    /// have too (a restart).
    pub(crate) fn drop_idle(&self) {
        lock(&self.idle).clear();
    }
}

/// The configured node and the nodes Cluster redirections named.
pub(crate) struct Nodes {
    seed: Arc<Node>,
    connections: usize,
    known: Mutex<HashMap<Addr, Arc<Node>>>,
    slots: Mutex<HashMap<u16, Arc<Node>>>,
}

impl Nodes {
    pub(crate) fn new(seed: Addr, connections: usize) -> Nodes {
        Nodes {
            seed: Arc::new(Node::new(seed, connections)),
            connections,
            known: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn seed(&self) -> &Arc<Node> {
        &self.seed
    }

    /// The node that last said it holds `slot`, else the configured one.
    pub(crate) fn for_slot(&self, slot: u16) -> Arc<Node> {
        lock(&self.slots)
            .get(&slot)
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.seed))
    }

    /// The node at `addr`, made on first sight.
    pub(crate) fn node(&self, addr: Addr) -> Arc<Node> {
        if addr == self.seed.addr {
            return Arc::clone(&self.seed);
        }
        let mut known = lock(&self.known);
        if let Some(n) = known.get(&addr) {
            return Arc::clone(n);
        }
        if known.len() >= MAX_NODES {
            known.clear();
            lock(&self.slots).clear();
        }
        let n = Arc::new(Node::new(addr.clone(), self.connections));
        known.insert(addr, Arc::clone(&n));
        n
    }

    /// `MOVED`: `slot` lives on `node` now.
    pub(crate) fn learn(&self, slot: u16, node: &Arc<Node>) {
        lock(&self.slots).insert(slot, Arc::clone(node));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_redis_writes_them() {
        let a = |s| Addr::parse(s, "10.0.0.1").map(|a| a.to_string());
        assert_eq!(a("127.0.0.1:7000").as_deref(), Some("127.0.0.1:7000"));
        assert_eq!(a("redis-1:6379").as_deref(), Some("redis-1:6379"));
        assert_eq!(a("[::1]:7001").as_deref(), Some("[::1]:7001"));
        assert_eq!(a("::1:7001").as_deref(), Some("[::1]:7001"));
        assert_eq!(a(":7002").as_deref(), Some("10.0.0.1:7002"));
        for bad in ["", "7000", "host:", "host:0", "host:70000", "?:7000", "h:x"] {
            assert_eq!(a(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_node_map_forgets_everything_past_its_bound() {
        let nodes = Nodes::new(Addr::parse("127.0.0.1:1", "").unwrap(), 1);
        let first = nodes.node(Addr::parse("127.0.0.1:2", "").unwrap());
        nodes.learn(7, &first);
        assert_eq!(nodes.for_slot(7).addr.port, 2);
        for port in 3..(3 + MAX_NODES as u16) {
            nodes.node(Addr::parse(&format!("127.0.0.1:{port}"), "").unwrap());
        }
        assert!(lock(&nodes.known).len() <= MAX_NODES);
        assert_eq!(nodes.for_slot(7).addr.port, 1, "back to the seed");
    }
}
