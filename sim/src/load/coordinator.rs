//! `onsale-sim load`: plan the run, create the event and set its defences
//! (the pre-queue draw, a scheduled opening, proof of work) when asked,
//! spawn the workers, open the sale when asked, gather the fans' records,
//! check them, report.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;
use onsale_schema::api::EventDetail;
use onsale_schema::limits;
use onsale_schema::message::{Audit, Reply};

use super::behaviour::{
    ScenarioPlan, arrival_offsets, check_time_scale, map_sections, scaled_config,
};
use super::net::{HttpConn, Target, parse_sources};
use super::report::{self, LoadReport, RunInfo};
use super::worker::raise_open_files_limit;
use super::{
    DURATION_S_MAX, FANS_MAX, FanRecord, Mode, SOCKETS_PER_SOURCE_MAX, SOCKETS_PER_WORKER_MAX,
    WORKERS_MAX, WorkerLine, WorkerPlan, unix_now_us,
};
use crate::scenario::Scenario;

/// After the deadline, workers get this long to report before they are
/// killed.
pub const WORKER_GRACE: Duration = Duration::from_secs(20);
/// Lines queued from the workers' stdout readers.
pub const LINES_QUEUED_MAX: usize = 16_384;
/// A progress summary on stderr this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// `onsale-sim load`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadOptions {
    /// The gateway, e.g. http://127.0.0.1:8080 (loopback only).
    #[arg(long)]
    pub target: String,
    /// Spread the fans over these gateways (comma-separated root URLs; a
    /// cluster's gateways): worker `w` sends its fans to the `w`-th, round
    /// robin. Default: `--target`. Operator calls always go to `--target`.
    #[arg(long, value_delimiter = ',')]
    pub fan_targets: Vec<String>,
    /// The event the fans join.
    #[arg(long)]
    pub event: u64,
    /// How many fans.
    #[arg(long)]
    pub fans: u64,
    /// Worker processes (each under 15,000 sockets).
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// Source addresses, e.g. 127.0.0.2,127.0.0.3 (default: as many
    /// 127.0.0.x from .2 as the fans need, one if few).
    #[arg(long)]
    pub sources: Option<String>,
    #[arg(long, value_enum, default_value_t = Mode::Journey)]
    pub mode: Mode,
    /// The operator token, to open the sale.
    #[arg(long, env = "ONSALE_OPERATOR_TOKEN", hide_env_values = true)]
    pub ops_token: Option<String>,
    /// Open the sale before the fans arrive.
    #[arg(long, requires = "ops_token", conflicts_with = "open_after_joined")]
    pub open_at_start: bool,
    /// Open the sale once every fan waits (or at half time): a mass
    /// admission.
    #[arg(long, requires = "ops_token")]
    pub open_after_joined: bool,
    /// Create the event first (sale scheduled) from this venue file, through
    /// the operator API; with --open-after-joined, a mass admission.
    #[arg(long, requires = "ops_token")]
    pub create_venue: Option<PathBuf>,
    /// The created event's config (JSON, fields of `EventConfig`), e.g.
    /// '{"shoppers_max":20000}'.
    #[arg(long, requires = "create_venue", default_value = "{}")]
    pub create_config: String,
    /// Create the event with the pre-queue draw (`pre_queue_draw`): fans
    /// who join before the opening are pre-queued, and get random places
    /// at it, ahead of later arrivals. Needs --create-venue or
    /// --create-from-scenario; open with --open-after-joined or
    /// --opens-in-s.
    #[arg(long)]
    pub pre_queue_draw: bool,
    /// The created event opens by itself this long after the run starts
    /// (its `opens_at`): the event's own scheduled opening instead of the
    /// driver's request.
    #[arg(long, conflicts_with_all = ["open_at_start", "open_after_joined"])]
    pub opens_in_s: Option<u64>,
    /// Joins need proof of work of this many bits (0 to 24): set on the
    /// event through the operator API before the fans arrive. Fans
    /// answer `stamp_required` with a solved challenge.
    #[arg(long, requires = "ops_token")]
    pub stamp_bits: Option<u8>,
    /// The run ends after this long; every fan stops then.
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    /// In wait mode, admitted fans keep their websocket open this long (a
    /// mass admission is then measured without thousands of closes
    /// competing with the deliveries).
    #[arg(long, default_value_t = 5)]
    pub linger_s: u64,
    /// Spread the fans' arrivals over this long (0: all at once). With
    /// --scenario, fans arrive along its curve instead.
    #[arg(long, default_value_t = 0, conflicts_with = "scenario")]
    pub ramp_s: u64,
    /// Fans behave as this scenario's behaviour model says (party sizes,
    /// seat preferences, patience, reloads and storms, retries after
    /// "full", show-up, shopping and checkout times, bots) and arrive
    /// along its curve. The event must be on the scenario's venue.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// With --scenario: wall-clock time = scenario time × this (0.01: a
    /// scenario minute in 0.6 s). The windows of an event the driver did
    /// not create are not scaled.
    #[arg(long, default_value_t = 1.0, requires = "scenario")]
    pub time_scale: f64,
    /// Create the event first from the scenario's venue and `[event]`
    /// config (sale scheduled), through the operator API; its windows
    /// scaled by --time-scale (the provider timeout at least 10 s).
    #[arg(
        long,
        requires_all = ["scenario", "ops_token"],
        conflicts_with = "create_venue"
    )]
    pub create_from_scenario: bool,
    /// Fans connecting at once (before `watching`), per worker.
    #[arg(long, default_value_t = 256)]
    pub arrivals_in_flight: u32,
    /// Fans are named <prefix>-<n>; the same name is the same fan, so use
    /// a new prefix for a fresh run against the same server.
    #[arg(long, default_value = "fan")]
    pub name_prefix: String,
    /// Tolerance of the delivery-order check (see `load::report`).
    #[arg(long, default_value_t = 1_000)]
    pub order_tolerance_ms: u64,
    /// Tolerance of the decision-order check (`decided_at`, whole ms).
    #[arg(long, default_value_t = 0)]
    pub decision_tolerance_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the JSON report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write every fan's record here (JSON lines).
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Skip the end-of-run cross-check against the event's audit (done
    /// when --ops-token is given).
    #[arg(long)]
    pub no_audit: bool,
    /// Run the workers as threads of this process instead of processes
    /// (tests, and small runs: one process's 20,000 open files are then
    /// shared by all of them).
    #[arg(long)]
    pub in_process: bool,
}

impl LoadOptions {
    /// Options from command-line words, as `onsale-sim load` takes them
    /// (`["--target", "http://127.0.0.1:8080", "--event", "1", ...]`): for
    /// tests and other programs, with the same defaults as the CLI.
    pub fn from_args<I, T>(args: I) -> anyhow::Result<LoadOptions>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Debug, clap::Parser)]
        struct Words {
            #[command(flatten)]
            options: LoadOptions,
        }
        let words = std::iter::once(std::ffi::OsString::from("load"))
            .chain(args.into_iter().map(Into::into));
        Ok(<Words as clap::Parser>::try_parse_from(words)?.options)
    }
}

/// A checked plan: one [`WorkerPlan`] per worker.
#[derive(Clone, Debug)]
pub struct Plan {
    pub target: Target,
    pub sources: Vec<Ipv4Addr>,
    pub workers: Vec<WorkerPlan>,
}

/// Check the options and split the fans over workers and sources.
pub fn plan(o: &LoadOptions, deadline_unix_ms: u64) -> anyhow::Result<Plan> {
    let target = Target::parse(&o.target)?;
    for fan_target in &o.fan_targets {
        Target::parse(fan_target).with_context(|| format!("--fan-targets {fan_target}"))?;
    }
    if o.fans == 0 || o.fans > FANS_MAX {
        bail!("--fans: must be within 1..={FANS_MAX}, got {}", o.fans);
    }
    if o.workers == 0 || o.workers > WORKERS_MAX {
        bail!(
            "--workers: must be within 1..={WORKERS_MAX}, got {}",
            o.workers
        );
    }
    if o.duration_s == 0 || o.duration_s > DURATION_S_MAX {
        bail!(
            "--duration-s: must be within 1..={DURATION_S_MAX}, got {}",
            o.duration_s
        );
    }
    if o.ramp_s >= o.duration_s {
        bail!("--ramp-s: must be below --duration-s");
    }
    if o.name_prefix.is_empty() || o.name_prefix.len() > 40 {
        bail!("--name-prefix: 1..=40 bytes");
    }
    if o.scenario.is_some() {
        check_time_scale(o.time_scale)?;
    }
    let creates = o.create_venue.is_some() || o.create_from_scenario;
    if o.pre_queue_draw && !creates {
        bail!("--pre-queue-draw: the driver sets it on the event it creates: add --create-venue");
    }
    if let Some(opens_in_s) = o.opens_in_s {
        if !creates {
            bail!("--opens-in-s: the driver sets it on the event it creates: add --create-venue");
        }
        if opens_in_s >= o.duration_s {
            bail!("--opens-in-s: must be below --duration-s");
        }
    }
    if let Some(bits) = o.stamp_bits
        && bits > limits::STAMP_BITS_MAX
    {
        bail!("--stamp-bits {bits}: at most {}", limits::STAMP_BITS_MAX);
    }
    let sockets = o.fans * o.mode.sockets_per_fan();
    let per_worker = o.fans.div_ceil(u64::from(o.workers));
    if per_worker * o.mode.sockets_per_fan() > SOCKETS_PER_WORKER_MAX {
        let needed = sockets.div_ceil(SOCKETS_PER_WORKER_MAX);
        bail!(
            "{} fans × {} sockets over {} workers is over {SOCKETS_PER_WORKER_MAX} sockets \
             per worker (a process may hold 20,000 open files): use --workers {needed} or more",
            o.fans,
            o.mode.sockets_per_fan(),
            o.workers
        );
    }
    let sources = match &o.sources {
        Some(list) => parse_sources(list)?,
        None => default_sources(sockets),
    };
    if sockets > sources.len() as u64 * SOCKETS_PER_SOURCE_MAX {
        bail!(
            "{sockets} sockets over {} source addresses is over {SOCKETS_PER_SOURCE_MAX} \
             per address: give more --sources",
            sources.len()
        );
    }
    let workers = (0..o.workers)
        .map(|w| {
            let first_fan = o.fans * u64::from(w) / u64::from(o.workers);
            let end = o.fans * (u64::from(w) + 1) / u64::from(o.workers);
            let fan_target = match o.fan_targets.len() {
                0 => o.target.clone(),
                n => o.fan_targets[w as usize % n].clone(),
            };
            WorkerPlan {
                worker: w,
                target: fan_target,
                event: o.event,
                mode: o.mode,
                name_prefix: o.name_prefix.clone(),
                first_fan,
                fan_count: end - first_fan,
                sources: sources.clone(),
                ramp_ms: o.ramp_s * 1000,
                arrivals_in_flight_max: o.arrivals_in_flight.max(1),
                deadline_unix_ms,
                linger_ms: o.linger_s * 1000,
                seed: o.seed,
                scenario: None,
            }
        })
        .collect();
    Ok(Plan {
        target,
        sources,
        workers,
    })
}

/// 127.0.0.1 for a small run; else 127.0.0.2, .3, … as many as needed.
fn default_sources(sockets: u64) -> Vec<Ipv4Addr> {
    let n = sockets.div_ceil(SOCKETS_PER_SOURCE_MAX).min(250);
    if n <= 1 {
        return vec![Ipv4Addr::LOCALHOST];
    }
    (0..n)
        .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8))
        .collect()
}

/// Run the whole load test; the report's verdict says whether a check
/// failed. Blocking, with its own runtime: call it outside any tokio
/// runtime (from a plain `#[test]`, or `spawn_blocking`).
pub fn run(o: &LoadOptions) -> anyhow::Result<LoadReport> {
    let scenario = match &o.scenario {
        Some(path) => Some(load_scenario(o, path)?),
        None => None,
    };
    let started_unix_ms = unix_now_us() / 1000;
    let deadline_unix_ms = started_unix_ms + o.duration_s * 1000;
    let mut plan = plan(o, deadline_unix_ms)?;
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let mut info = RunInfo {
        target: o.target.clone(),
        event: o.event,
        mode: Some(o.mode),
        fans: o.fans,
        workers: o.workers,
        sources: plan.sources.iter().map(ToString::to_string).collect(),
        duration_s: o.duration_s,
        started_unix_ms,
        order_tolerance_ms: o.order_tolerance_ms,
        decision_tolerance_ms: o.decision_tolerance_ms,
        scenario: scenario.as_ref().map(|s| s.file.name.clone()),
        time_scale: scenario.as_ref().map(|_| o.time_scale),
        pre_queue_draw: o.pre_queue_draw,
        stamp_bits: o.stamp_bits,
        solver_threads: super::stamp::Solver::for_this_process().threads(),
        ..RunInfo::default()
    };
    if let Some(opens_in_s) = o.opens_in_s {
        info.sale_opened_unix_ms = Some(started_unix_ms + opens_in_s * 1000);
        info.sale_opened_when = Some("scheduled".into());
    }
    if let Some(venue) = &o.create_venue {
        let venue_json = read_json(venue)?;
        let config: serde_json::Value =
            serde_json::from_str(&o.create_config).context("--create-config: not JSON")?;
        let config = with_opening(o, config, info.sale_opened_unix_ms)?;
        create_event(&runtime, &plan.target, o, venue_json, config)?;
    }
    if let Some(scenario) = scenario.as_ref().filter(|_| o.create_from_scenario) {
        let venue_json = read_json(&scenario.venue_path)?;
        let config = scaled_config(&scenario.file.event, o.time_scale);
        eprintln!(
            "load: the event's windows at time × {}: show up {} ms, shop {} ms, check out {} ms, \
             provider timeout {} ms",
            o.time_scale,
            config.show_up_window_ms,
            config.shopping_window_ms,
            config.checkout_window_ms,
            config.provider_timeout_ms
        );
        let config = with_opening(o, serde_json::to_value(&config)?, info.sale_opened_unix_ms)?;
        create_event(&runtime, &plan.target, o, venue_json, config)?;
    }
    if let Some(bits) = o.stamp_bits {
        set_stamp_bits(&runtime, &plan.target, o, bits)?;
    }
    if let Some(scenario) = &scenario {
        let sections = event_sections(&runtime, &plan.target, o.event, scenario)?;
        // Workers read the file again, wherever they run from.
        let path = std::fs::canonicalize(&scenario.path)
            .with_context(|| format!("{}", scenario.path.display()))?;
        for w in &mut plan.workers {
            w.scenario = Some(ScenarioPlan {
                path: path.clone(),
                time_scale: o.time_scale,
                sections: sections.clone(),
                fans: o.fans,
            });
        }
    }
    if o.open_at_start {
        open_sale(&runtime, &plan.target, o, &mut info, "start")?;
    }
    let (tx, rx) = mpsc::sync_channel(LINES_QUEUED_MAX);
    let mut children = Vec::new();
    if o.in_process {
        if plan.workers.iter().map(|w| w.fan_count).sum::<u64>() * o.mode.sockets_per_fan()
            > SOCKETS_PER_WORKER_MAX
        {
            bail!("--in-process: over {SOCKETS_PER_WORKER_MAX} sockets in one process");
        }
        for w in &plan.workers {
            let w = w.clone();
            let mut out = LineSender {
                tx: tx.clone(),
                partial: Vec::new(),
            };
            std::thread::spawn(move || {
                if let Err(e) = super::worker::run(&w, &mut out) {
                    eprintln!("load: worker {}: {e:#}", w.worker);
                }
                let _ = out.tx.send(end_line(w.worker));
            });
        }
    } else {
        children = spawn_workers(&plan, &tx)?;
    }
    drop(tx);
    let records = gather(&runtime, &plan, o, &mut info, &rx, &mut children)?;
    info.ended_unix_ms = unix_now_us() / 1000;
    if let Some(path) = &o.records {
        write_records(path, &records)?;
    }
    let audit = match (&o.ops_token, o.no_audit) {
        (Some(token), false) => match read_audit(&runtime, &plan.target, token, o.event) {
            Ok(audit) => Some(audit),
            Err(e) => {
                eprintln!("load: the audit: {e:#}");
                info.audit_error = Some(format!("{e:#}"));
                None
            }
        },
        _ => None,
    };
    Ok(report::analyse(info, &records, audit.as_ref()))
}

/// One process per worker, its stdout read line by line on a thread.
fn spawn_workers(plan: &Plan, tx: &mpsc::SyncSender<String>) -> anyhow::Result<Vec<Child>> {
    let exe = std::env::current_exe().context("this executable's path")?;
    let mut children: Vec<Child> = Vec::new();
    for w in &plan.workers {
        let spawned = Command::new(&exe)
            .arg("load-worker")
            .arg("--plan")
            .arg(serde_json::to_string(w)?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawn worker {}", w.worker));
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                for mut child in children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(e);
            }
        };
        let stdout = child.stdout.take().context("worker stdout")?;
        let tx = tx.clone();
        let worker = w.worker;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    return;
                }
            }
            // A worker that died before its own End line ends here.
            let _ = tx.send(end_line(worker));
        });
        children.push(child);
    }
    Ok(children)
}

/// The line that marks a worker done (sent again when its output ends:
/// a second `End` changes nothing).
fn end_line(worker: u32) -> String {
    serde_json::to_string(&WorkerLine::End { worker, fans: 0 }).unwrap_or_default()
}

/// An in-process worker's stdout: complete lines go to the coordinator.
#[derive(Debug)]
struct LineSender {
    tx: mpsc::SyncSender<String>,
    partial: Vec<u8>,
}

impl std::io::Write for LineSender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            self.tx
                .send(line)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Read the workers' lines until every worker ended (or the deadline plus
/// grace passed: then the rest are killed).
fn gather(
    runtime: &tokio::runtime::Runtime,
    plan: &Plan,
    o: &LoadOptions,
    info: &mut RunInfo,
    rx: &mpsc::Receiver<String>,
    children: &mut [Child],
) -> anyhow::Result<Vec<FanRecord>> {
    let started = Instant::now();
    let hard_stop = started + Duration::from_secs(o.duration_s) + WORKER_GRACE;
    let half_time = started + Duration::from_secs(o.duration_s) / 2;
    let workers = plan.workers.len();
    let mut gauges = vec![(0u64, 0u64, 0u64, 0u64); workers];
    let mut ended = vec![false; workers];
    let mut records = Vec::with_capacity(o.fans as usize);
    let mut last_report = Instant::now();
    loop {
        if ended.iter().all(|e| *e) || Instant::now() >= hard_stop {
            break;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => match serde_json::from_str::<WorkerLine>(&line) {
                Ok(WorkerLine::Fan { record }) => records.push(*record),
                Ok(WorkerLine::Progress {
                    worker,
                    settled,
                    waiting,
                    admitted,
                    done,
                }) => {
                    if let Some(g) = gauges.get_mut(worker as usize) {
                        *g = (settled, waiting, admitted, done);
                    }
                    let waiting_now: u64 = gauges.iter().map(|g| g.1).sum();
                    info.waiting_max = info.waiting_max.max(waiting_now);
                }
                Ok(WorkerLine::End { worker, .. }) => {
                    if let Some(e) = ended.get_mut(worker as usize) {
                        *e = true;
                    }
                }
                Err(e) => eprintln!("load: unreadable worker line ({e}): {line:.200}"),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if o.open_after_joined && info.sale_opened_unix_ms.is_none() {
            let settled: u64 = gauges.iter().map(|g| g.0).sum();
            let when = if settled >= o.fans {
                Some("all_waiting")
            } else if Instant::now() >= half_time {
                eprintln!(
                    "load: {settled} of {} fans settled at half time; opening anyway",
                    o.fans
                );
                Some("half_time")
            } else {
                None
            };
            if let Some(when) = when
                && let Err(e) = open_sale(runtime, &plan.target, o, info, when)
            {
                // The fans are running: let them run to the deadline and
                // report what they saw.
                eprintln!("load: {e:#}");
                info.sale_open_error = Some(format!("{e:#}"));
            }
        }
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            let sum = gauges.iter().fold((0, 0, 0, 0), |a, g| {
                (a.0 + g.0, a.1 + g.1, a.2 + g.2, a.3 + g.3)
            });
            eprintln!(
                "load: {:>5.0} s  settled {}  waiting {}  admitted {}  done {} / {}",
                started.elapsed().as_secs_f64(),
                sum.0,
                sum.1,
                sum.2,
                sum.3,
                o.fans
            );
        }
    }
    // Lines still queued after the last End.
    while let Ok(line) = rx.try_recv() {
        if let Ok(WorkerLine::Fan { record }) = serde_json::from_str(&line) {
            records.push(*record);
        }
    }
    for child in children.iter_mut() {
        if !matches!(child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(200));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            eprintln!("load: worker pid {} did not end; killing it", child.id());
            let _ = child.kill();
        }
        let status = child
            .wait()
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        info.workers_exit.push(status);
    }
    Ok(records)
}

/// `POST /api/ops/events/{event}/sale {"command":"open"}`.
fn open_sale(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    o: &LoadOptions,
    info: &mut RunInfo,
    when: &str,
) -> anyhow::Result<()> {
    let token = o
        .ops_token
        .as_deref()
        .context("opening the sale needs --ops-token")?;
    let path = format!("/api/ops/events/{}/sale", o.event);
    info.sale_opened_unix_ms = Some(unix_now_us() / 1000);
    info.sale_opened_when = Some(when.into());
    let body = br#"{"command":"open"}"#.to_vec();
    let answer = gateway_call(runtime, target, Some(token), Method::POST, &path, body)?;
    let body = String::from_utf8_lossy(&answer.body);
    if answer.status != 200 {
        bail!("opening the sale: {} {body}", answer.status);
    }
    eprintln!("load: sale opened ({when}): {body}");
    Ok(())
}

/// The created event's config with the driver's opening: the pre-queue
/// draw (`--pre-queue-draw`) and the scheduled opening (`--opens-in-s`).
fn with_opening(
    o: &LoadOptions,
    mut config: serde_json::Value,
    opens_at_unix_ms: Option<u64>,
) -> anyhow::Result<serde_json::Value> {
    let Some(fields) = config.as_object_mut() else {
        bail!("the created event's config is not a JSON object: {config}");
    };
    if o.pre_queue_draw {
        fields.insert("pre_queue_draw".into(), true.into());
    }
    if let Some(at) = opens_at_unix_ms.filter(|_| o.opens_in_s.is_some()) {
        fields.insert("opens_at".into(), at.into());
    }
    Ok(config)
}

/// `POST /api/ops/events/{event}/stamp {"bits": N}`: joins need proof of
/// work from now on.
fn set_stamp_bits(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    o: &LoadOptions,
    bits: u8,
) -> anyhow::Result<()> {
    let token = o
        .ops_token
        .as_deref()
        .context("--stamp-bits needs --ops-token")?;
    let path = format!("/api/ops/events/{}/stamp", o.event);
    let body = serde_json::to_vec(&serde_json::json!({ "bits": bits }))?;
    let answer = gateway_call(runtime, target, Some(token), Method::POST, &path, body)?;
    let text = String::from_utf8_lossy(&answer.body);
    if answer.status != 200 {
        bail!("{path}: {} {text:.300}", answer.status);
    }
    eprintln!("load: joins need proof of work: {text:.200}");
    Ok(())
}

/// Read and check the scenario; its arrivals must end before the run.
fn load_scenario(o: &LoadOptions, path: &std::path::Path) -> anyhow::Result<Scenario> {
    let scenario = Scenario::load(path)?;
    check_time_scale(o.time_scale)?;
    let last = arrival_offsets(&scenario, o.time_scale, o.seed, o.fans)
        .last()
        .unwrap_or_default();
    if last >= Duration::from_secs(o.duration_s) {
        bail!(
            "--scenario {}: {} fans arrive over {:.1} s at --time-scale {}, not within \
             --duration-s {}: lower the time scale or give the run longer",
            path.display(),
            o.fans,
            last.as_secs_f64(),
            o.time_scale,
            o.duration_s
        );
    }
    Ok(scenario)
}

/// `GET /api/events/{event}`: the event's index of each of the scenario
/// venue's sections.
fn event_sections(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    event: u64,
    scenario: &Scenario,
) -> anyhow::Result<Vec<u16>> {
    let path = format!("/api/events/{event}");
    let answer = gateway_call(runtime, target, None, Method::GET, &path, Vec::new())?;
    if answer.status != 200 {
        bail!(
            "{path}: {} {:.300}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    let detail: EventDetail =
        serde_json::from_slice(&answer.body).with_context(|| format!("{path}: not an event"))?;
    map_sections(&scenario.venue, &detail).with_context(|| {
        format!(
            "--scenario {}: event {event} and the venue {}",
            scenario.path.display(),
            scenario.venue_path.display()
        )
    })
}

fn read_json(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))
}

/// `POST /api/ops/events`: the event, its sale scheduled.
fn create_event(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    o: &LoadOptions,
    venue_json: serde_json::Value,
    config: serde_json::Value,
) -> anyhow::Result<()> {
    let token = o
        .ops_token
        .as_deref()
        .context("creating an event needs --ops-token")?;
    let body = serde_json::json!({
        "event": o.event,
        "name": format!("Load test {}", o.event),
        "city": "Loopback",
        "starts_at": unix_now_us() / 1000 + 86_400_000,
        "venue": venue_json,
        "config": config,
    });
    let body = serde_json::to_vec(&body)?;
    let answer = gateway_call(
        runtime,
        target,
        Some(token),
        Method::POST,
        "/api/ops/events",
        body,
    )?;
    let text = String::from_utf8_lossy(&answer.body);
    if answer.status != 200 {
        bail!("creating event {}: {} {text:.300}", o.event, answer.status);
    }
    eprintln!("load: event {} created: {text:.200}", o.event);
    Ok(())
}

/// `GET /api/ops/events/{event}/audit`.
fn read_audit(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    token: &str,
    event: u64,
) -> anyhow::Result<Audit> {
    let path = format!("/api/ops/events/{event}/audit");
    let answer = gateway_call(runtime, target, Some(token), Method::GET, &path, Vec::new())?;
    let text = String::from_utf8_lossy(&answer.body);
    if answer.status != 200 {
        bail!("{} {text:.300}", answer.status);
    }
    match serde_json::from_slice::<Reply>(&answer.body) {
        Ok(Reply::Audit { audit }) => Ok(audit),
        Ok(_) | Err(_) => bail!("not an audit: {text:.300}"),
    }
}

/// Attempts of an operator request (or the event's details) while the
/// gateway answers 503 (an event just created may not be placed yet),
/// 100 ms apart.
pub const OPS_ATTEMPTS_MAX: u32 = 100;

/// A request of the coordinator's own (with the operator token, if
/// given), retried while 503.
fn gateway_call(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<super::net::HttpAnswer> {
    runtime.block_on(async {
        let mut answer = None;
        for _ in 0..OPS_ATTEMPTS_MAX {
            let mut http = HttpConn::open(target, Ipv4Addr::LOCALHOST).await?;
            let body = (method == Method::POST).then(|| body.clone());
            let a = http.send(method.clone(), path, token, body).await?;
            if a.status != 503 {
                return Ok(a);
            }
            eprintln!("load: {path}: 503 {}", String::from_utf8_lossy(&a.body));
            answer = Some(a);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answer.context("no answer")
    })
}

fn write_records(path: &std::path::Path, records: &[FanRecord]) -> anyhow::Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for r in records {
        serde_json::to_writer(&mut out, r)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
