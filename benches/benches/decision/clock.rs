//! What a benchmark's time is: wall time (criterion's default), or with
//! `RATECARD_BENCH_CLOCK=cpu` the benchmark thread's CPU time, which does
//! not count the time other processes hold the core. On a shared machine
//! the CPU clock keeps single-threaded medians steady; on a quiet one the
//! two agree. `contended` always reports wall time (its threads' span).

use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;

/// The environment variable that selects the clock.
pub const ENV: &str = "RATECARD_BENCH_CLOCK";

/// Wall time or thread CPU time, in nanoseconds.
pub struct Clock {
    cpu: bool,
    epoch: Instant,
}

impl Clock {
    /// The clock `RATECARD_BENCH_CLOCK` names (`cpu` or `wall`, the default).
    pub fn from_env() -> Clock {
        let cpu = match std::env::var(ENV) {
            Ok(v) if v == "cpu" => true,
            Ok(v) if v == "wall" || v.is_empty() => false,
            Ok(v) => panic!("{ENV}={v}: expected `cpu` or `wall`"),
            Err(_) => false,
        };
        eprintln!(
            "clock: {}",
            if cpu { "thread CPU time" } else { "wall time" }
        );
        Clock {
            cpu,
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> Duration {
        if self.cpu {
            thread_cpu_time()
        } else {
            self.epoch.elapsed()
        }
    }
}

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for Clock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.now()
    }

    fn end(&self, start: Duration) -> Duration {
        self.now().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanos
    }
}

/// Values in nanoseconds, printed as such.
struct Nanos;

impl ValueFormatter for Nanos {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        "ns"
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        // Per second, from nanoseconds per iteration.
        let per_iter = match *throughput {
            Throughput::Bits(n)
            | Throughput::Bytes(n)
            | Throughput::BytesDecimal(n)
            | Throughput::Elements(n) => n as f64,
            Throughput::ElementsAndBytes { elements, .. } => elements as f64,
        };
        for v in values {
            *v = per_iter * 1e9 / *v;
        }
        "/s"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}
