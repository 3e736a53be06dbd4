//! A worker process: its share of the fans as tasks on one thread, one
//! JSON line per fan on stdout ([`WorkerLine`]), progress lines meanwhile.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::behaviour::Behaviour;
use super::fan::{self, FanContext, FanSpec, Progress};
use super::net::Target;
use super::stamp::Solver;
use super::{SOCKETS_PER_WORKER_MAX, WorkerLine, WorkerPlan, unix_now_us};

/// A progress line this often.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Finished fans' records queued for the writer.
pub const RECORDS_QUEUED_MAX: usize = 4_096;
/// After the deadline, fans get this long to close before the worker
/// stops waiting for them.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Run a worker's plan, writing lines to `out` (stdout in the process).
pub fn run(plan: &WorkerPlan, out: &mut impl Write) -> anyhow::Result<()> {
    check(plan)?;
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(drive(plan, out))
}

fn check(plan: &WorkerPlan) -> anyhow::Result<()> {
    let sockets = plan.fan_count * plan.mode.sockets_per_fan();
    if sockets > SOCKETS_PER_WORKER_MAX {
        bail!(
            "worker {}: {} fans need up to {sockets} sockets, over {SOCKETS_PER_WORKER_MAX}: \
             use more workers",
            plan.worker,
            plan.fan_count
        );
    }
    if plan.sources.is_empty() {
        bail!("worker {}: no source address", plan.worker);
    }
    Ok(())
}

/// Raise the soft limit on open files to the hard limit (20,000 here).
pub fn raise_open_files_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

async fn drive(plan: &WorkerPlan, out: &mut impl Write) -> anyhow::Result<()> {
    let now_us = unix_now_us();
    let left_ms = plan.deadline_unix_ms.saturating_sub(now_us / 1000);
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let behaviour = match &plan.scenario {
        Some(scenario) => Some(Arc::new(Behaviour::load(scenario)?)),
        None => None,
    };
    let ctx = Arc::new(FanContext {
        target: Target::parse(&plan.target)?,
        event: plan.event,
        mode: plan.mode,
        deadline: started + Duration::from_millis(left_ms),
        linger: Duration::from_millis(plan.linger_ms),
        arrivals: Arc::new(Semaphore::new(plan.arrivals_in_flight_max.max(1) as usize)),
        progress: Arc::clone(&progress),
        seed: plan.seed,
        behaviour,
        started,
        solver: Solver::for_this_process(),
    });
    let (tx, mut rx) = mpsc::channel(RECORDS_QUEUED_MAX);
    spawn_fans(plan, &ctx, started, tx);

    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    let hard_stop = ctx.deadline + CLOSE_GRACE;
    let mut written = 0u64;
    loop {
        tokio::select! {
            record = rx.recv() => {
                let Some(record) = record else { break };
                write_line(out, &WorkerLine::Fan { record: Box::new(record) })?;
                written += 1;
            }
            _ = ticker.tick() => {
                write_line(out, &progress_line(plan.worker, &progress))?;
                out.flush().context("stdout")?;
            }
            () = tokio::time::sleep_until(hard_stop) => {
                eprintln!(
                    "worker {}: {} fans still running {CLOSE_GRACE:?} after the deadline; \
                     stopping",
                    plan.worker,
                    plan.fan_count - written
                );
                break;
            }
        }
    }
    write_line(out, &progress_line(plan.worker, &progress))?;
    write_line(
        out,
        &WorkerLine::End {
            worker: plan.worker,
            fans: written,
        },
    )?;
    out.flush().context("stdout")?;
    Ok(())
}

/// One task per fan, each starting at its arrival: along the scenario's
/// curve, or at its place in the ramp.
fn spawn_fans(
    plan: &WorkerPlan,
    ctx: &Arc<FanContext>,
    started: Instant,
    tx: mpsc::Sender<super::FanRecord>,
) {
    let sources = plan.sources.len() as u64;
    let arrivals = match (&ctx.behaviour, &plan.scenario) {
        (Some(behaviour), Some(scenario)) => {
            behaviour.arrivals(plan.seed, scenario.fans, plan.first_fan, plan.fan_count)
        }
        _ => Vec::new(),
    };
    for i in 0..plan.fan_count {
        let index = plan.first_fan + i;
        let spec = FanSpec {
            index,
            name: format!("{}-{index}", plan.name_prefix),
            source: plan.sources[(index % sources) as usize],
        };
        let start_at = match arrivals.get(i as usize) {
            Some(after) => started + *after,
            None => started + Duration::from_millis(plan.ramp_ms * i / plan.fan_count.max(1)),
        };
        let ctx = Arc::clone(ctx);
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(start_at).await;
            let record = fan::run(&ctx, &spec).await;
            let _ = tx.send(record).await;
        });
    }
}

fn progress_line(worker: u32, progress: &Progress) -> WorkerLine {
    WorkerLine::Progress {
        worker,
        settled: progress.settled.load(Ordering::Relaxed),
        waiting: progress.waiting.load(Ordering::Relaxed),
        admitted: progress.admitted.load(Ordering::Relaxed),
        done: progress.done.load(Ordering::Relaxed),
    }
}

fn write_line(out: &mut impl Write, line: &WorkerLine) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, line).context("encode line")?;
    out.write_all(b"\n").context("stdout")
}
