//! Settings, from flags and an optional file of `name = value` lines with
//! the same names; a flag overrides the file.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ratecard_redis::{ClockSource, Options, Policy, MAX_PREFIX};

use crate::backend::ApiKind;
use crate::engine::MAX_CAPACITY;

/// The usage text.
pub const USAGE: &str = "\
usage: ratecard-rls [--config FILE] [--listen ADDR] [--domain NAME]
                    [--api frontend|backend] [--capacity SLOTS]
                    [--seed HEX32 | --seed-file FILE] [--dry-run]
                    [--shutdown-grace SECS]
                    [--redis HOST:PORT [--redis-policy closed|open|local]
                     [--redis-timeout MS] [--redis-prefix P]
                     [--redis-clock server|gateway]]

  --config FILE          read `name = value` lines (the names below, no dashes;
                         `#` starts a comment); flags override them
  --listen ADDR          gRPC address (default 127.0.0.1:8081; port 0 picks one)
  --domain NAME          the ratelimit filter's domain (default clerk)
  --api KIND             the API of descriptors without an `api` entry
                         (default: none, the entry is required)
  --capacity SLOTS       table slots, one per live rule and subject, 16 bytes
                         each (default 1048576)
  --seed HEX32           the 128-bit hash seed as 32 hex digits; replicas that
                         share state must share it (default: from the OS)
  --seed-file FILE       read the seed's 32 hex digits from FILE
  --dry-run              decide and report, never deny
  --shutdown-grace SECS  after SIGTERM/SIGINT, wait this long for calls and
                         connections to finish (default 10)
  --redis HOST:PORT      keep the limits in Redis (or a Redis Cluster, through
                         any node): every replica on it enforces one limit;
                         needs --seed or --seed-file, the same on every one
  --redis-policy P       when Redis cannot answer: closed (gRPC UNAVAILABLE,
                         the default), open (OK, unlimited) or local (this
                         replica's own table: per-replica limits)
  --redis-timeout MS     a decision's deadline through Redis, milliseconds
                         (default 25)
  --redis-prefix P       the keys' prefix (default rc:)
  --redis-clock C        server (Redis's TIME, the default) or gateway (this
                         host's wall clock, for services that refuse TIME)
";

/// Everything the service is started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The filter's domain.
    pub domain: String,
    /// The API of descriptors without an `api` entry.
    pub api: Option<ApiKind>,
    /// Table slots.
    pub capacity: u32,
    /// The hash seed; `None`: 16 bytes from the OS.
    pub seed: Option<[u8; 16]>,
    /// Report would-be denials, never deny.
    pub dry_run: bool,
    /// How long shutdown may wait.
    pub shutdown_grace: Duration,
    /// The Redis backend, if any.
    pub redis: RedisSettings,
}

/// `--redis` and its companions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// `host:port`; `None`: the in-process table.
    pub addr: Option<String>,
    /// The keys' prefix.
    pub prefix: String,
    /// A decision's deadline.
    pub timeout: Duration,
    /// What answers when Redis cannot.
    pub policy: Policy,
    /// Where the script's time comes from.
    pub clock: ClockSource,
}

impl Default for RedisSettings {
    fn default() -> RedisSettings {
        let o = Options::new("");
        RedisSettings {
            addr: None,
            prefix: String::from_utf8_lossy(&o.prefix).into_owned(),
            // Under the 50 ms filter timeout of the README's Envoy config, so
            // the policy answers before Envoy gives up on the service.
            timeout: Duration::from_millis(25),
            policy: o.policy,
            clock: o.clock,
        }
    }
}

impl RedisSettings {
    /// The backend's options; `None` without `--redis`.
    pub fn options(&self) -> Option<Options> {
        let addr = self.addr.clone()?;
        Some(Options {
            prefix: self.prefix.as_bytes().to_vec(),
            timeout: self.timeout,
            policy: self.policy,
            clock: self.clock,
            ..Options::new(addr)
        })
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            domain: "clerk".into(),
            api: None,
            capacity: 1 << 20,
            seed: None,
            dry_run: false,
            shutdown_grace: Duration::from_secs(10),
            redis: RedisSettings::default(),
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the service.
    Run(Settings),
    /// Print the usage.
    Help,
}

/// A setting that cannot be used, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Read the command line (without the program name).
pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, ConfigError> {
    let mut flags = Vec::new();
    let mut file = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| bad(format!("argument {a:?} is not UTF-8")))?;
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(bad(format!("unexpected argument {arg:?}")));
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None if flag == "dry-run" => (flag.to_string(), "true".to_string()),
            None => {
                let v = args
                    .next()
                    .ok_or_else(|| bad(format!("--{flag} needs a value")))?;
                let v = v
                    .into_string()
                    .map_err(|v| bad(format!("value {v:?} is not UTF-8")))?;
                (flag.to_string(), v)
            }
        };
        if name == "config" {
            file = Some(PathBuf::from(value));
        } else {
            flags.push((name, value, "flag".to_string()));
        }
    }
    let mut pairs = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        pairs.extend(file_pairs(&text, &path.display().to_string())?);
    }
    pairs.extend(flags);
    let mut s = Settings::default();
    for (name, value, origin) in pairs {
        apply(&mut s, &name, &value).map_err(|e| bad(format!("{origin} {name}: {}", e.0)))?;
    }
    check_redis(&s)?;
    Ok(Command::Run(s))
}

/// The `name = value` lines of a settings file.
fn file_pairs(text: &str, origin: &str) -> Result<Vec<(String, String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("{origin}:{}: expected `name = value`", i + 1)))?;
        pairs.push((
            name.trim().to_string(),
            value.trim().to_string(),
            format!("{origin}:{}:", i + 1),
        ));
    }
    Ok(pairs)
}

fn apply(s: &mut Settings, name: &str, value: &str) -> Result<(), ConfigError> {
    match name {
        "listen" => {
            s.listen = value
                .parse()
                .map_err(|_| bad(format!("{value:?} is not an address like 127.0.0.1:8081")))?
        }
        "domain" if value.is_empty() => return Err(bad("must not be empty")),
        "domain" => s.domain = value.to_string(),
        "api" => {
            s.api = Some(
                ApiKind::parse(value.as_bytes())
                    .ok_or_else(|| bad("must be frontend or backend"))?,
            )
        }
        "capacity" => {
            s.capacity = value
                .parse()
                .ok()
                .filter(|c| (1..=MAX_CAPACITY).contains(c))
                .ok_or_else(|| bad(format!("must be 1 to {MAX_CAPACITY}")))?
        }
        "seed" => s.seed = Some(parse_seed(value)?),
        "seed-file" => {
            let text = std::fs::read_to_string(value)
                .map_err(|e| bad(format!("cannot read {value}: {e}")))?;
            s.seed = Some(parse_seed(text.trim())?);
        }
        "dry-run" => {
            s.dry_run = match value {
                "true" | "on" | "yes" => true,
                "false" | "off" | "no" => false,
                _ => return Err(bad("must be true or false")),
            }
        }
        "shutdown-grace" => {
            s.shutdown_grace = value
                .parse::<u64>()
                .ok()
                .filter(|&secs| secs <= 3600)
                .map(Duration::from_secs)
                .ok_or_else(|| bad("must be 0 to 3600 seconds"))?
        }
        "redis" => {
            let port = value.rsplit_once(':').and_then(|(h, p)| {
                let port = p.parse::<u16>().ok().filter(|&p| p != 0);
                port.filter(|_| !h.is_empty())
            });
            if port.is_none() {
                return Err(bad(format!("{value:?} is not host:port")));
            }
            s.redis.addr = Some(value.to_string());
        }
        "redis-prefix" => {
            if value.len() > MAX_PREFIX || value.contains(['{', '}']) {
                return Err(bad(format!(
                    "at most {MAX_PREFIX} bytes, without {{ or }} (they would move the Cluster hash tag)"
                )));
            }
            s.redis.prefix = value.to_string();
        }
        "redis-timeout" => {
            s.redis.timeout = value
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=60_000).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| bad("must be 1 to 60000 milliseconds"))?
        }
        "redis-policy" => {
            s.redis.policy = match value {
                "closed" => Policy::FailClosed,
                "open" => Policy::FailOpen,
                "local" => Policy::Local,
                _ => return Err(bad("must be closed, open or local")),
            }
        }
        "redis-clock" => {
            s.redis.clock = match value {
                "server" => ClockSource::Server,
                "gateway" => ClockSource::Gateway,
                _ => return Err(bad("must be server or gateway")),
            }
        }
        _ => return Err(bad("unknown setting")),
    }
    Ok(())
}

/// Redis needs a seed every replica shares; its companions need Redis.
fn check_redis(s: &Settings) -> Result<(), ConfigError> {
    let r = &s.redis;
    if r.addr.is_some() && s.seed.is_none() {
        return Err(bad(
            "--redis needs --seed or --seed-file: keys are keyed hashes, and every \
             replica must hash with the same seed (one drawn from the OS would \
             give each replica limits of its own)",
        ));
    }
    let alone = RedisSettings {
        addr: None,
        ..r.clone()
    };
    if r.addr.is_none() && alone != RedisSettings::default() {
        return Err(bad(
            "--redis-policy, --redis-timeout, --redis-prefix and --redis-clock need --redis",
        ));
    }
    Ok(())
}

/// 32 hex digits as 16 bytes.
pub fn parse_seed(hex: &str) -> Result<[u8; 16], ConfigError> {
    let digits = hex.as_bytes();
    if digits.len() != 32 {
        return Err(bad("a seed is 32 hex digits"));
    }
    let mut seed = [0u8; 16];
    for (byte, pair) in seed.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).map_err(|_| bad("a seed is 32 hex digits"))?;
        *byte = u8::from_str_radix(text, 16).map_err(|_| bad("a seed is 32 hex digits"))?;
    }
    Ok(seed)
}

/// 16 bytes from the operating system's generator.
pub fn os_seed() -> std::io::Result<[u8; 16]> {
    use std::io::Read;
    let mut seed = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Settings, ConfigError> {
        match from_args(args.iter().map(OsString::from))? {
            Command::Run(s) => Ok(s),
            Command::Help => Err(bad("help")),
        }
    }

    #[test]
    fn no_flags_give_the_defaults() {
        assert_eq!(run(&[]).unwrap(), Settings::default());
        assert_eq!(
            from_args([OsString::from("--help")]).unwrap(),
            Command::Help
        );
    }

    #[test]
    fn flags_set_every_setting_in_both_spellings() {
        let s = run(&[
            "--listen=127.0.0.1:0",
            "--domain",
            "edge",
            "--api",
            "backend",
            "--capacity=4096",
            "--seed",
            "000102030405060708090a0b0c0d0e0f",
            "--dry-run",
            "--shutdown-grace=3",
        ])
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(s.domain, "edge");
        assert_eq!(s.api, Some(ApiKind::Backend));
        assert_eq!(s.capacity, 4096);
        assert_eq!(s.seed, Some(core::array::from_fn(|i| i as u8)));
        assert!(s.dry_run);
        assert_eq!(s.shutdown_grace, Duration::from_secs(3));
    }

    #[test]
    fn a_file_sets_what_flags_then_override() {
        let dir = std::env::temp_dir().join(format!("ratecard-rls-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seed = dir.join("seed");
        std::fs::write(&seed, "ffeeddccbbaa99887766554433221100\n").unwrap();
        let conf = dir.join("rls.conf");
        std::fs::write(
            &conf,
            format!(
                "# ratecard-rls\nlisten = 127.0.0.1:9000\napi = frontend  # the edge\n\
                 capacity = 2048\nseed-file = {}\ndry-run = on\n",
                seed.display()
            ),
        )
        .unwrap();
        let s = run(&["--config", conf.to_str().unwrap(), "--capacity", "8192"]).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.api, Some(ApiKind::Frontend));
        assert_eq!(s.capacity, 8192);
        assert_eq!(s.seed.unwrap()[0], 0xff);
        assert!(s.dry_run);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn redis_flags_set_the_backend_and_need_a_seed() {
        let s = run(&["--redis", "127.0.0.1:6379", "--seed-file=/dev/null"]);
        assert!(s.is_err(), "an empty seed file");
        let seed = "000102030405060708090a0b0c0d0e0f";
        let s = run(&[
            "--redis=redis-1:6380",
            "--seed",
            seed,
            "--redis-policy",
            "local",
            "--redis-timeout=40",
            "--redis-prefix",
            "edge:",
            "--redis-clock",
            "gateway",
        ])
        .unwrap();
        let o = s.redis.options().unwrap();
        assert_eq!(o.addr, "redis-1:6380");
        assert_eq!(
            (o.policy, o.timeout, o.clock),
            (
                Policy::Local,
                Duration::from_millis(40),
                ClockSource::Gateway
            )
        );
        assert_eq!(o.prefix, b"edge:");
        assert_eq!(run(&[]).unwrap().redis.options(), None);

        let e = run(&["--redis", "127.0.0.1:6379"]).unwrap_err();
        assert!(e.0.contains("seed"), "{e}");
        let e = run(&["--redis-policy", "open"]).unwrap_err();
        assert!(e.0.contains("need --redis"), "{e}");
        for args in [
            &["--redis", "127.0.0.1"][..],
            &["--redis", ":6379"],
            &["--redis", "h:0"],
            &["--redis-policy", "maybe"],
            &["--redis-timeout", "0"],
            &["--redis-prefix", "a{b}"],
            &["--redis-clock", "ntp"],
        ] {
            let mut args = args.to_vec();
            args.extend(["--seed", seed]);
            assert!(run(&args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        for args in [
            &["--listen", "localhost"][..],
            &["--api", "Backend"],
            &["--capacity", "0"],
            &["--capacity", "268435457"],
            &["--seed", "00"],
            &["--seed", "zz0102030405060708090a0b0c0d0e0f"],
            &["--dry-run=maybe"],
            &["--colour", "red"],
            &["--domain="],
            &["--capacity"],
            &["stray"],
            &["--config", "/nonexistent/ratecard-rls.conf"],
        ] {
            assert!(run(args).is_err(), "{args:?} was accepted");
        }
        let e = run(&["--capacity", "0"]).unwrap_err();
        assert!(e.0.contains("capacity"), "{e}");
    }
}
