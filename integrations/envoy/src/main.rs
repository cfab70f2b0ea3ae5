//! `ratecard-rls`: see `ratecard-rls --help` and the crate's README.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use ratecard_rls::backend::Backend;
use ratecard_rls::config::{self, Command, Settings, USAGE};
use ratecard_rls::engine::{Counters, Local, TableConfig};
use ratecard_rls::server::{self, Rls};
use ratecard_rls::shared::Redis;

fn main() -> ExitCode {
    let settings = match config::from_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(s)) => s,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ratecard-rls: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ratecard-rls: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let seed = match settings.seed {
        Some(seed) => seed,
        None => config::os_seed().map_err(|e| format!("cannot read a seed from the OS: {e}"))?,
    };
    let table = TableConfig {
        capacity: settings.capacity,
        seed,
        dry_run: settings.dry_run,
    };
    match settings.redis.options() {
        None => {
            let local = Local::new(&table)?;
            let about = format!("{} slots", local.capacity());
            serve(settings, local, about, |l| counters(l.counters()))
        }
        Some(options) => {
            let about = format!(
                "Redis {}, policy {:?}, timeout {:?}",
                options.addr, options.policy, options.timeout
            );
            let redis = Redis::new(&table, options)?;
            let about = format!("{about}, {} local slots", redis.capacity());
            serve(settings, redis, about, |r| {
                let c = r.remote_counters();
                format!(
                    "{}; Redis: {} calls, {} errors, {} policy answers, {} cached denials, breaker opened {} times",
                    counters(r.counters()),
                    c.calls,
                    c.errors,
                    c.policy_answers,
                    c.cached,
                    c.breaker_opens
                )
            })
        }
    }
}

fn counters(c: Counters) -> String {
    format!(
        "{} allowed, {} denied, {} of {} slots in use, {} evicted in debt",
        c.allowed, c.denied, c.occupancy, c.capacity, c.evicted
    )
}

/// Serve `backend` until SIGTERM or SIGINT; `summary` is the last log line.
fn serve<B: Backend>(
    settings: &Settings,
    backend: B,
    about: String,
    summary: impl Fn(&B) -> String,
) -> Result<(), Box<dyn std::error::Error>> {
    let rls = Arc::new(Rls::new(backend, &settings.domain, settings.api));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read this line for the port.
        println!(
            "ratecard-rls listening on {addr} (domain {}, {about}, dry run {})",
            settings.domain,
            if settings.dry_run { "on" } else { "off" }
        );
        std::io::stdout().flush()?;

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = server::serve(Arc::clone(&rls), listener, async {
            let _ = stop_rx.await;
        });
        tokio::pin!(serving);
        tokio::select! {
            done = &mut serving => done?,
            signal = terminated() => {
                eprintln!("ratecard-rls: {signal}: finishing calls in flight");
                let _ = stop_tx.send(());
                match tokio::time::timeout(settings.shutdown_grace, &mut serving).await {
                    Ok(done) => done?,
                    Err(_) => eprintln!(
                        "ratecard-rls: connections still open after {:?}: closing them",
                        settings.shutdown_grace
                    ),
                }
            }
        }
        eprintln!("ratecard-rls: stopped: {}", summary(rls.backend()));
        Ok(())
    })
}

/// SIGTERM or SIGINT, whichever comes first.
async fn terminated() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still dies by the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
