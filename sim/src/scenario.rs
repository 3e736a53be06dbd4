//! Scenario files: what to simulate, as TOML.
//!
//! Every table refuses unknown fields, and [`Scenario::load`] checks every
//! value against its range, so a typo or an impossible value is an error
//! naming the file and the field, never a silent default. Times are in
//! seconds (`_s`) or milliseconds (`_ms`), as the name says.
//!
//! A minimal scenario:
//!
//! ```toml
//! name = "club"
//! venue = "venues/club.json"   # relative to this file, or to a parent (the repo)
//!
//! [arrivals]
//! fans = 3000
//! curve = { kind = "burst", duration_s = 300, half_life_s = 30 }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use onsale_schema::{EventConfig, Venue};
use serde::Deserialize;

/// Largest number of fans (arrivals) one scenario may have. Each costs one
/// ~20-byte record in the simulator, and bots multiply it by their
/// accounts: 50M fans stay well inside the 4 GiB a run may use.
pub const FANS_MAX: u64 = 50_000_000;
/// Fan accounts (fans plus bots' extra accounts) are indexed by `u32`, and
/// the event core refuses more than `limits::EVENT_FANS_MAX` at once.
pub const ACCOUNTS_MAX: u64 = 100_000_000;
/// Largest virtual duration of a run: 30 days.
pub const DURATION_MAX_S: u64 = 30 * 24 * 3600;
/// Bots' accounts each; a bot farm bigger than this is many bots.
pub const BOT_ACCOUNTS_MAX: u32 = 1_000;
/// Retries of one fan after "full", and refreshes of one waiting fan.
pub const RETRIES_MAX: u8 = 100;
/// Crashes and refresh storms one scenario may schedule.
pub const CRASHES_MAX: usize = 100;
/// Cores of one bot's proof-of-work farm, at most.
pub const BOT_CORES_MAX: u32 = 1_024;
/// Genuine fans sharing one NAT address, at most.
pub const NAT_FANS_PER_IP_MAX: u32 = 100_000;

/// A scenario file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Names the run in its outputs.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The venue file: relative to the scenario file, or to one of its
    /// parent directories (so `venues/stadium.json` works from the repo).
    pub venue: String,
    #[serde(default)]
    pub run: RunFile,
    /// Overrides of the event's config (`EventConfig`: `full_factor`,
    /// `shoppers_max`, the windows in ms, …). Unset fields keep defaults.
    #[serde(default)]
    pub event: EventConfig,
    #[serde(default)]
    pub sale: SaleFile,
    pub arrivals: ArrivalsFile,
    #[serde(default)]
    pub fans: FansFile,
    #[serde(default)]
    pub bots: BotsFile,
    #[serde(default)]
    pub payments: PaymentsFile,
    /// Defences against bots, modelled in the shell (all off by default).
    #[serde(default)]
    pub defences: DefencesFile,
    #[serde(default)]
    pub store: StoreFile,
    /// Node crashes: the event is restored from snapshot + journal.
    #[serde(default)]
    pub crashes: Vec<CrashFile>,
    /// Moments when many waiting fans reload their page at once.
    #[serde(default)]
    pub storms: Vec<StormFile>,
    #[serde(default)]
    pub checks: ChecksFile,
    /// Deliberate bugs, to prove the invariant checks catch them. Tests only.
    #[serde(default)]
    pub faults: FaultsFile,
}

/// A uniform range `min..=max`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Span {
    pub min: f64,
    pub max: f64,
}

impl Span {
    const fn new(min: f64, max: f64) -> Span {
        Span { min, max }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunFile {
    /// The run stops at this virtual time even if fans are still acting.
    pub duration_max_s: u64,
    /// One row of `timeseries.csv` per this many virtual seconds.
    pub sample_every_s: u64,
}

impl Default for RunFile {
    fn default() -> Self {
        RunFile {
            duration_max_s: 4 * 3600,
            sample_every_s: 1,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaleFile {
    /// When the operator opens the sale (virtual seconds).
    pub opens_at_s: u64,
    /// When the operator closes it, if ever.
    pub closes_at_s: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalsFile {
    /// People (and bots) arriving, each once; retries come on top.
    pub fans: u64,
    pub curve: Curve,
}

/// When fans arrive, relative to the sale's opening.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Curve {
    /// A flash crowd from the opening: arrival density halves every
    /// `half_life_s`, cut off at `duration_s`.
    Burst { duration_s: f64, half_life_s: f64 },
    /// A steady Poisson stream of `rate_per_s` from the opening.
    Poisson { rate_per_s: f64 },
    /// A waiting room that opens `opens_before_s` before the sale: all but
    /// `late_share` of the fans arrive uniformly before the opening, the
    /// rest uniformly over `late_duration_s` after it. With `randomize`,
    /// fans in line before the opening get their places in random order
    /// at the opening (a lottery), not in arrival order.
    PreQueue {
        opens_before_s: f64,
        late_share: f64,
        late_duration_s: f64,
        randomize: bool,
    },
}

/// How people behave.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FansFile {
    /// Weights of party sizes 1, 2, 3, …: a fan asks for that many tickets.
    pub party_size_weights: Vec<f64>,
    pub preference: PreferenceFile,
    /// Delay from admission to opening the seat map.
    pub show_up_s: Span,
    /// Share of admitted fans who never show up (their turn lapses).
    pub no_show: f64,
    /// Browsing time from showing up to asking for seats.
    pub shopping_s: Span,
    /// Time from holding seats to submitting payment.
    pub checkout_s: Span,
    /// Share of fans holding seats who pay at all.
    pub pay_probability: f64,
    /// After a decline, the chance to try paying again (while time remains).
    pub pay_retry_probability: f64,
    /// Share of waiting fans who give up after an exponential patience.
    pub impatient_share: f64,
    pub patience_mean_s: f64,
    /// Fans turned away as "full" try again, at most this many times.
    pub full_retries_max: u8,
    pub full_retry_after_s: Span,
    /// Share of waiting fans who reload their page now and then (a
    /// resume with their queue token, or a plain rejoin).
    pub refresh_share: f64,
    pub refresh_every_s: Span,
    pub refreshes_max: u8,
    /// After a node crash, waiting fans reconnect over this window.
    pub reconnect_spread_s: f64,
}

impl Default for FansFile {
    fn default() -> Self {
        FansFile {
            party_size_weights: vec![0.3, 0.4, 0.15, 0.15],
            preference: PreferenceFile::default(),
            show_up_s: Span::new(2.0, 30.0),
            no_show: 0.03,
            shopping_s: Span::new(10.0, 120.0),
            checkout_s: Span::new(20.0, 200.0),
            pay_probability: 0.93,
            pay_retry_probability: 0.6,
            impatient_share: 0.3,
            patience_mean_s: 1_800.0,
            full_retries_max: 2,
            full_retry_after_s: Span::new(30.0, 600.0),
            refresh_share: 0.2,
            refresh_every_s: Span::new(60.0, 600.0),
            refreshes_max: 2,
            reconnect_spread_s: 30.0,
        }
    }
}

/// Weights of where fans want to sit.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreferenceFile {
    /// Best available anywhere.
    pub anywhere: f64,
    /// The cheapest price level.
    pub cheapest: f64,
    /// The dearest price level.
    pub dearest: f64,
    /// One section, picked at random.
    pub section: f64,
}

impl Default for PreferenceFile {
    fn default() -> Self {
        PreferenceFile {
            anywhere: 0.4,
            cheapest: 0.2,
            dearest: 0.2,
            section: 0.2,
        }
    }
}

/// Automated buyers: instant, relentless, always the most tickets allowed.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotsFile {
    /// Share of arrivals that are bots.
    pub share: f64,
    /// Fan accounts each bot joins with (all at its arrival).
    pub accounts: u32,
    /// A bot's reaction time to anything, in ms.
    pub react_ms: u64,
    pub full_retries_max: u8,
    pub full_retry_after_s: Span,
}

impl Default for BotsFile {
    fn default() -> Self {
        BotsFile {
            share: 0.0,
            accounts: 1,
            react_ms: 50,
            full_retries_max: 20,
            full_retry_after_s: Span::new(1.0, 10.0),
        }
    }
}

/// The simulated payment provider.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsFile {
    pub latency_ms: Span,
    /// Share of payments declined.
    pub failure_rate: f64,
    /// Share of payments the provider never answers (voided by the event).
    pub silent_share: f64,
    /// Share confirmed only after `late_delay_s` (past the checkout
    /// deadline, sometimes past the provider timeout: then refunded).
    pub late_share: f64,
    pub late_delay_s: Span,
}

impl Default for PaymentsFile {
    fn default() -> Self {
        PaymentsFile {
            latency_ms: Span::new(300.0, 4_000.0),
            failure_rate: 0.05,
            silent_share: 0.002,
            late_share: 0.01,
            late_delay_s: Span::new(120.0, 2_400.0),
        }
    }
}

/// Defences against bots, each off unless its table (or `draw`) is given.
/// The event core knows none of them: they are the gateway's and the fan
/// page's, modelled in the simulator's shell (see the README's
/// "Defences" for what each assumes).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefencesFile {
    /// Everyone waiting for an opening (a pre-queue before the sale, or
    /// the fans without a code before the general sale) gets a random
    /// place at it, not a place in arrival order. Needs something to act
    /// on: a `pre_queue` curve or `[defences.codes]`.
    pub draw: bool,
    pub codes: Option<CodesFile>,
    pub proof_of_work: Option<ProofOfWorkFile>,
    pub ip_limits: Option<IpLimitsFile>,
}

impl DefencesFile {
    /// The defences on, by name: `draw`, `codes`, `proof_of_work`,
    /// `ip_limits`.
    #[must_use]
    pub fn on(&self) -> Vec<&'static str> {
        [
            ("draw", self.draw),
            ("codes", self.codes.is_some()),
            ("proof_of_work", self.proof_of_work.is_some()),
            ("ip_limits", self.ip_limits.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }
}

/// A presale for registered fans: each holds one code bound to its one
/// account, and until the presale ends a join needs a code.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodesFile {
    /// The presale runs from the waiting room's opening until this long
    /// after the sale opens.
    pub presale_s: f64,
    /// Share of genuine fans who registered (and got a code).
    pub fan_registered_share: f64,
    /// Chance that one bot account passes registration screening (and
    /// gets a code): a bot's accounts are screened one by one.
    pub bot_account_verified_share: f64,
    /// After the presale, anyone may join (those who waited for it get
    /// their places at its opening). Without, fans with no code never join.
    #[serde(default = "yes")]
    pub general_sale: bool,
}

fn yes() -> bool {
    true
}

/// A proof-of-work challenge on every join.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofOfWorkFile {
    /// A genuine fan's phone solves one challenge in this time.
    pub phone_solve_s: Span,
    /// One core of a bot's farm solves one challenge in this time.
    pub bot_solve_s: f64,
    /// Cores one bot (one operator, all its accounts) solves on.
    pub bot_cores: u32,
    /// A challenge is issued when a client asks for it (no sooner than its
    /// arrival), and its solution is stale this long after: so a client
    /// may solve ahead for a retry at most this much before it.
    pub challenge_ttl_s: f64,
}

/// Joins per address, limited as the gateway limits requests per client.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpLimitsFile {
    /// A burst of this many joins per address, then one every
    /// 60 / this seconds (the gateway's GCRA quota per minute).
    pub joins_per_ip_per_min: u32,
    /// Addresses each bot's accounts share (account i uses address i mod
    /// this).
    pub bot_ip_pool: u32,
    /// Share of genuine fans behind a shared NAT (a carrier's, a campus').
    #[serde(default)]
    pub shared_nat_share: f64,
    /// Fans of this sale behind one shared address, on average.
    #[serde(default = "nat_fans_per_ip")]
    pub nat_fans_per_ip: u32,
    /// A refused join is retried after the answer's `Retry-After`, at
    /// most this many times per account; then the account gives up.
    #[serde(default = "ip_retries_max")]
    pub retries_max: u8,
}

fn nat_fans_per_ip() -> u32 {
    20
}

fn ip_retries_max() -> u8 {
    50
}

/// The simulated store.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreFile {
    /// Time for a counter block reservation to become durable.
    pub counter_latency_ms: u64,
    /// Time one group commit of the journal takes (the writer's fsynced
    /// transaction). Every record produced while a commit runs goes in the
    /// next one; what the event says waits for its records in the output
    /// gate. The embedded store measured ~1 ms for one record and 2–4 ms
    /// for batches of 128–1,024 (`cargo bench -p onsale-cluster --bench
    /// durable -- store`), hence 2.
    pub commit_latency_ms: u64,
    /// A snapshot is stored (and the journal truncated) every this many
    /// journal records.
    pub snapshot_every_records: u64,
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile {
            counter_latency_ms: 5,
            commit_latency_ms: 2,
            snapshot_every_records: 10_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashFile {
    /// Virtual time of the crash.
    pub at_s: f64,
    /// Until the event is restored on another node.
    pub downtime_s: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StormFile {
    pub at_s: f64,
    /// Share of the fans waiting at that moment who reload.
    pub share: f64,
    /// Their reloads spread over this window.
    pub spread_s: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChecksFile {
    /// `EventCore::check_invariants` (O(seats + fans)) every this many steps.
    pub core_every_steps: u64,
}

impl Default for ChecksFile {
    fn default() -> Self {
        ChecksFile {
            core_every_steps: 100_000,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultsFile {
    /// The shell reports the seats of this order (1-based, in sale order)
    /// to the ledger a second time, as a core that sold them twice would.
    pub inject_double_sell_at_order: Option<u64>,
}

/// A checked scenario with its venue loaded.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub file: ScenarioFile,
    pub path: PathBuf,
    pub venue_path: PathBuf,
    pub venue: Arc<Venue>,
}

impl Scenario {
    /// Read, parse and check a scenario file and load its venue. Errors
    /// name the file and the field.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario file {}", path.display()))?;
        Scenario::parse(path, &text)
    }

    /// Parse and check scenario `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Scenario> {
        let file: ScenarioFile = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!("scenario {}: {}", path.display(), e.to_string().trim())
        })?;
        if let Err(e) = check(&file) {
            bail!("scenario {}: {e}", path.display());
        }
        let venue_path = find_venue(path, &file.venue)
            .with_context(|| format!("scenario {}: field `venue`", path.display()))?;
        let bytes = std::fs::read(&venue_path).with_context(|| {
            format!(
                "scenario {}: field `venue`: cannot read {}",
                path.display(),
                venue_path.display()
            )
        })?;
        let venue = Venue::from_json(&bytes).with_context(|| {
            format!(
                "scenario {}: field `venue`: {} is not a valid venue",
                path.display(),
                venue_path.display()
            )
        })?;
        Ok(Scenario {
            file,
            path: path.to_path_buf(),
            venue_path,
            venue: Arc::new(venue),
        })
    }

    /// Fan accounts the run may create: people, plus bots' extra accounts.
    #[must_use]
    pub fn accounts_max(&self) -> u64 {
        accounts_max(&self.file)
    }
}

fn accounts_max(file: &ScenarioFile) -> u64 {
    let bots = (file.arrivals.fans as f64 * file.bots.share).ceil() as u64 + 1;
    file.arrivals.fans + bots * u64::from(file.bots.accounts.saturating_sub(1))
}

/// Look for `venue` beside the scenario file, then in each parent directory.
fn find_venue(scenario: &Path, venue: &str) -> anyhow::Result<PathBuf> {
    let given = Path::new(venue);
    if given.is_absolute() {
        if given.is_file() {
            return Ok(given.to_path_buf());
        }
        bail!("venue file {venue:?} not found");
    }
    let dir = scenario.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut looked = Vec::new();
    for ancestor in dir.ancestors() {
        let candidate = ancestor.join(given);
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked.push(candidate.display().to_string());
    }
    bail!(
        "venue file {venue:?} not found (looked at {})",
        looked.join(", ")
    )
}

/// A field's problem: `Err("field `a.b`: problem")`.
fn bad<T>(field: &str, problem: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("field `{field}`: {problem}"))
}

fn share(field: &str, value: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&value) {
        return bad(field, format!("must be within 0..=1, got {value}"));
    }
    Ok(())
}

fn span(field: &str, s: Span, max: f64) -> Result<(), String> {
    if !(s.min.is_finite() && s.max.is_finite()) || s.min < 0.0 || s.min > s.max || s.max > max {
        return bad(
            field,
            format!(
                "needs 0 <= min <= max <= {max}, got min {} max {}",
                s.min, s.max
            ),
        );
    }
    Ok(())
}

fn positive(field: &str, value: f64, max: f64) -> Result<(), String> {
    if !(value.is_finite() && value > 0.0 && value <= max) {
        return bad(field, format!("must be > 0 and <= {max}, got {value}"));
    }
    Ok(())
}

fn non_negative(field: &str, value: f64, max: f64) -> Result<(), String> {
    if !(value.is_finite() && (0.0..=max).contains(&value)) {
        return bad(field, format!("must be within 0..={max}, got {value}"));
    }
    Ok(())
}

/// Check every value against its range.
fn check(f: &ScenarioFile) -> Result<(), String> {
    let day = 24.0 * 3600.0;
    let horizon = DURATION_MAX_S as f64;
    if f.name.trim().is_empty() || f.name.len() > 64 {
        return bad("name", "must be 1 to 64 characters");
    }
    if let Err(e) = f.event.check() {
        return bad(&format!("event.{}", e.field), e.problem);
    }
    // The core's own pre-queue, presale and scheduled opening answer in
    // ways the engine's fans do not follow; the simulator models them in
    // its shell instead.
    if f.event.pre_queue_draw {
        return bad(
            "event.pre_queue_draw",
            "the simulator draws in its own lobby, not with the core's pre-queue: \
             use a pre_queue curve with `randomize`, or `[defences] draw = true`",
        );
    }
    if f.event.presale_until.is_some() {
        return bad(
            "event.presale_until",
            "the simulator models a presale in its shell: use `[defences.codes]`",
        );
    }
    if f.event.opens_at.is_some() {
        return bad(
            "event.opens_at",
            "the simulator's operator opens the sale: use `sale.opens_at_s`",
        );
    }
    if f.run.duration_max_s == 0 || f.run.duration_max_s > DURATION_MAX_S {
        return bad(
            "run.duration_max_s",
            format!("must be 1..={DURATION_MAX_S}"),
        );
    }
    if f.run.sample_every_s == 0 || f.run.sample_every_s > f.run.duration_max_s {
        return bad("run.sample_every_s", "must be 1..=run.duration_max_s");
    }
    if f.sale.opens_at_s > DURATION_MAX_S {
        return bad("sale.opens_at_s", format!("must be <= {DURATION_MAX_S}"));
    }
    if f.sale.closes_at_s.is_some_and(|c| c <= f.sale.opens_at_s) {
        return bad("sale.closes_at_s", "must be after sale.opens_at_s");
    }
    if f.arrivals.fans == 0 || f.arrivals.fans > FANS_MAX {
        return bad("arrivals.fans", format!("must be 1..={FANS_MAX}"));
    }
    match &f.arrivals.curve {
        Curve::Burst {
            duration_s,
            half_life_s,
        } => {
            positive("arrivals.curve.duration_s", *duration_s, horizon)?;
            positive("arrivals.curve.half_life_s", *half_life_s, horizon)?;
        }
        Curve::Poisson { rate_per_s } => positive("arrivals.curve.rate_per_s", *rate_per_s, 1e9)?,
        Curve::PreQueue {
            opens_before_s,
            late_share,
            late_duration_s,
            ..
        } => {
            positive("arrivals.curve.opens_before_s", *opens_before_s, horizon)?;
            if *opens_before_s > f.sale.opens_at_s as f64 {
                return bad(
                    "arrivals.curve.opens_before_s",
                    format!(
                        "the waiting room would open before time 0: set sale.opens_at_s >= {opens_before_s}"
                    ),
                );
            }
            share("arrivals.curve.late_share", *late_share)?;
            positive("arrivals.curve.late_duration_s", *late_duration_s, horizon)?;
        }
    }
    check_fans(&f.fans, f.event.tickets_per_fan_max)?;
    let b = &f.bots;
    share("bots.share", b.share)?;
    if b.accounts == 0 || b.accounts > BOT_ACCOUNTS_MAX {
        return bad("bots.accounts", format!("must be 1..={BOT_ACCOUNTS_MAX}"));
    }
    non_negative("bots.react_ms", b.react_ms as f64, 3_600_000.0)?;
    if b.full_retries_max > RETRIES_MAX {
        return bad("bots.full_retries_max", format!("must be <= {RETRIES_MAX}"));
    }
    span("bots.full_retry_after_s", b.full_retry_after_s, day)?;
    if accounts_max(f) > ACCOUNTS_MAX {
        return bad(
            "bots.accounts",
            format!("fans plus bots' accounts exceed {ACCOUNTS_MAX}"),
        );
    }
    check_defences(f)?;
    let p = &f.payments;
    span("payments.latency_ms", p.latency_ms, day * 1000.0)?;
    share("payments.failure_rate", p.failure_rate)?;
    share("payments.silent_share", p.silent_share)?;
    share("payments.late_share", p.late_share)?;
    if p.failure_rate + p.silent_share + p.late_share > 1.0 {
        return bad(
            "payments.failure_rate",
            "failure_rate + silent_share + late_share must not exceed 1",
        );
    }
    span("payments.late_delay_s", p.late_delay_s, day)?;
    if f.store.counter_latency_ms > 60_000 {
        return bad("store.counter_latency_ms", "must be <= 60000");
    }
    if f.store.commit_latency_ms > 60_000 {
        return bad("store.commit_latency_ms", "must be <= 60000");
    }
    if f.store.snapshot_every_records == 0 {
        return bad("store.snapshot_every_records", "must be >= 1");
    }
    if f.crashes.len() > CRASHES_MAX {
        return bad("crashes", format!("at most {CRASHES_MAX}"));
    }
    let mut last_up = 0.0;
    for (i, c) in f.crashes.iter().enumerate() {
        non_negative(&format!("crashes[{i}].at_s"), c.at_s, horizon)?;
        positive(&format!("crashes[{i}].downtime_s"), c.downtime_s, day)?;
        if c.at_s < last_up {
            return bad(
                &format!("crashes[{i}].at_s"),
                "crashes must be in time order, each after the previous restore",
            );
        }
        last_up = c.at_s + c.downtime_s;
    }
    if f.storms.len() > CRASHES_MAX {
        return bad("storms", format!("at most {CRASHES_MAX}"));
    }
    for (i, s) in f.storms.iter().enumerate() {
        non_negative(&format!("storms[{i}].at_s"), s.at_s, horizon)?;
        share(&format!("storms[{i}].share"), s.share)?;
        non_negative(&format!("storms[{i}].spread_s"), s.spread_s, day)?;
    }
    if f.checks.core_every_steps == 0 {
        return bad("checks.core_every_steps", "must be >= 1");
    }
    if f.faults.inject_double_sell_at_order == Some(0) {
        return bad("faults.inject_double_sell_at_order", "orders count from 1");
    }
    Ok(())
}

fn check_fans(f: &FansFile, tickets_max: u8) -> Result<(), String> {
    let day = 24.0 * 3600.0;
    let w = &f.party_size_weights;
    if w.is_empty() || w.len() > usize::from(tickets_max) {
        return bad(
            "fans.party_size_weights",
            format!("needs 1 to event.tickets_per_fan_max ({tickets_max}) weights"),
        );
    }
    if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0 {
        return bad(
            "fans.party_size_weights",
            "weights must be >= 0 and not all 0",
        );
    }
    let p = &f.preference;
    let weights = [
        ("anywhere", p.anywhere),
        ("cheapest", p.cheapest),
        ("dearest", p.dearest),
        ("section", p.section),
    ];
    for (name, x) in weights {
        non_negative(&format!("fans.preference.{name}"), x, 1e9)?;
    }
    if weights.iter().map(|(_, x)| x).sum::<f64>() <= 0.0 {
        return bad("fans.preference", "weights must not all be 0");
    }
    span("fans.show_up_s", f.show_up_s, day)?;
    share("fans.no_show", f.no_show)?;
    span("fans.shopping_s", f.shopping_s, day)?;
    span("fans.checkout_s", f.checkout_s, day)?;
    share("fans.pay_probability", f.pay_probability)?;
    share("fans.pay_retry_probability", f.pay_retry_probability)?;
    share("fans.impatient_share", f.impatient_share)?;
    positive("fans.patience_mean_s", f.patience_mean_s, 30.0 * day)?;
    if f.full_retries_max > RETRIES_MAX {
        return bad("fans.full_retries_max", format!("must be <= {RETRIES_MAX}"));
    }
    span("fans.full_retry_after_s", f.full_retry_after_s, day)?;
    share("fans.refresh_share", f.refresh_share)?;
    span("fans.refresh_every_s", f.refresh_every_s, day)?;
    if f.refresh_every_s.min <= 0.0 && f.refreshes_max > 0 {
        return bad("fans.refresh_every_s", "min must be > 0");
    }
    if f.refreshes_max > RETRIES_MAX {
        return bad("fans.refreshes_max", format!("must be <= {RETRIES_MAX}"));
    }
    non_negative("fans.reconnect_spread_s", f.reconnect_spread_s, day)?;
    Ok(())
}

fn check_defences(f: &ScenarioFile) -> Result<(), String> {
    let d = &f.defences;
    let horizon = DURATION_MAX_S as f64;
    let early = matches!(f.arrivals.curve, Curve::PreQueue { .. });
    if d.draw && !early && d.codes.is_none() {
        return bad(
            "defences.draw",
            "nobody would be drawn: the curve has no arrivals before the opening \
             (use a pre_queue curve) and there is no presale ([defences.codes])",
        );
    }
    if let Some(c) = &d.codes {
        positive("defences.codes.presale_s", c.presale_s, horizon)?;
        share(
            "defences.codes.fan_registered_share",
            c.fan_registered_share,
        )?;
        share(
            "defences.codes.bot_account_verified_share",
            c.bot_account_verified_share,
        )?;
    }
    if let Some(p) = &d.proof_of_work {
        span(
            "defences.proof_of_work.phone_solve_s",
            p.phone_solve_s,
            3_600.0,
        )?;
        positive("defences.proof_of_work.bot_solve_s", p.bot_solve_s, 3_600.0)?;
        if p.bot_cores == 0 || p.bot_cores > BOT_CORES_MAX {
            return bad(
                "defences.proof_of_work.bot_cores",
                format!("must be 1..={BOT_CORES_MAX}"),
            );
        }
        positive(
            "defences.proof_of_work.challenge_ttl_s",
            p.challenge_ttl_s,
            86_400.0,
        )?;
        if p.challenge_ttl_s <= p.phone_solve_s.max || p.challenge_ttl_s <= p.bot_solve_s {
            return bad(
                "defences.proof_of_work.challenge_ttl_s",
                "must exceed phone_solve_s.max and bot_solve_s (a solution would be stale before it is sent)",
            );
        }
    }
    if let Some(l) = &d.ip_limits {
        if l.joins_per_ip_per_min == 0 || l.joins_per_ip_per_min > 60_000 {
            return bad(
                "defences.ip_limits.joins_per_ip_per_min",
                "must be 1..=60000",
            );
        }
        if l.bot_ip_pool == 0 || l.bot_ip_pool > BOT_ACCOUNTS_MAX {
            return bad(
                "defences.ip_limits.bot_ip_pool",
                format!("must be 1..={BOT_ACCOUNTS_MAX}"),
            );
        }
        share("defences.ip_limits.shared_nat_share", l.shared_nat_share)?;
        if l.nat_fans_per_ip == 0 || l.nat_fans_per_ip > NAT_FANS_PER_IP_MAX {
            return bad(
                "defences.ip_limits.nat_fans_per_ip",
                format!("must be 1..={NAT_FANS_PER_IP_MAX}"),
            );
        }
        if l.retries_max > RETRIES_MAX {
            return bad(
                "defences.ip_limits.retries_max",
                format!("must be <= {RETRIES_MAX}"),
            );
        }
    }
    Ok(())
}
