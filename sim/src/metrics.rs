//! What a run measured: the summary, the time series, and the helpers that
//! compute them (inversion counts, percentiles). Everything here is
//! written out in a fixed order, with no wall-clock data, so that a seed
//! and a scenario give byte-identical files.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Pairs out of order: how many `i < j` have `keys[i] > keys[j]`.
/// O(n log n) with a Fenwick tree over the keys' ranks.
#[must_use]
pub fn inversions(keys: &[u64]) -> u64 {
    let mut sorted: Vec<u64> = keys.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut tree = vec![0u64; sorted.len() + 1];
    let mut count = 0u64;
    for (seen, key) in keys.iter().enumerate() {
        let rank = sorted.partition_point(|k| k <= key); // 1-based: keys <= key
        // Keys seen so far that are <= key.
        let mut at_most = 0;
        let mut i = rank;
        while i > 0 {
            at_most += tree[i];
            i &= i - 1;
        }
        count += seen as u64 - at_most;
        let mut i = rank;
        while i < tree.len() {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    }
    count
}

/// Inversions as a share of all pairs: 0 in order, 1 fully reversed.
#[must_use]
pub fn inversion_share(inversions: u64, n: u64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let pairs = (n as f64) * (n as f64 - 1.0) / 2.0;
    round6(inversions as f64 / pairs)
}

/// Milliseconds as kept per fan and in percentiles (`u32`: 49 days, past
/// any run's horizon), saturating.
#[must_use]
pub fn ms32(ms: u64) -> u32 {
    ms.min(u64::from(u32::MAX)) as u32
}

/// Round for output: six decimals are plenty and keep files readable.
#[must_use]
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Percentiles of durations in ms, reported in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_s: f64,
    pub p50_s: f64,
    pub p90_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
}

impl Percentiles {
    /// From durations in ms (sorted here).
    #[must_use]
    pub fn of_ms(values: &mut [u32]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_unstable();
        let at = |q: f64| {
            let i = ((values.len() as f64 - 1.0) * q).round() as usize;
            f64::from(values[i]) / 1000.0
        };
        let sum: u64 = values.iter().map(|v| u64::from(*v)).sum();
        Percentiles {
            count: values.len() as u64,
            mean_s: round6(sum as f64 / values.len() as f64 / 1000.0),
            p50_s: at(0.5),
            p90_s: at(0.9),
            p99_s: at(0.99),
            max_s: at(1.0),
        }
    }
}

/// `summary.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub venue: String,
    pub capacity: u32,
    pub fans: u64,
    pub people: u64,
    pub bots: u64,
    /// Fan accounts: people plus every bot account.
    pub accounts: u64,
    pub arrivals: u64,
    pub join_attempts: u64,
    /// Accounts that got a place in line.
    pub joined: u64,
    /// "Full" answers, and accounts that gave up after them.
    pub turned_away_full: u64,
    pub gave_up_full: u64,
    /// "Busy" answers (the counter awaited a durable block), and accounts
    /// that gave up after too many.
    pub busy_answers: u64,
    pub gave_up_busy: u64,
    /// Accounts told "sold out" (on arrival, retry, or while waiting).
    pub turned_away_sold_out: u64,
    pub admitted: u64,
    pub no_shows: u64,
    pub turns_lapsed: u64,
    pub holds: u64,
    pub hold_rejections: u64,
    pub payments_submitted: u64,
    pub payments_late: u64,
    pub payments_declined: u64,
    pub payments_silent: u64,
    pub payments_answered_late: u64,
    pub refunds: u64,
    /// Sales whose confirmation came after the checkout deadline: payment
    /// submitted in time, honoured late.
    pub sold_after_deadline: u64,
    pub orders: u64,
    pub tickets_sold: u32,
    pub sell_through: f64,
    pub sale_opened_at_s: f64,
    /// From the opening to the last ticket, if it sold out.
    pub sold_out_after_s: Option<f64>,
    /// From the opening until 99 % of the seats were sold (the last few
    /// can wait for silent payments to be voided).
    pub sold_99_after_s: Option<f64>,
    pub abandoned_waiting: u64,
    pub abandoned_checkout: u64,
    pub gave_up_no_seats: u64,
    pub bot_orders: u64,
    pub bot_tickets: u64,
    pub bot_ticket_share: f64,
    /// How the sale went for genuine fans (people, not bots).
    #[serde(default)]
    pub genuine: Genuine,
    /// What the defences did (all zero when none is on).
    #[serde(default)]
    pub defences: DefencesSummary,
    pub fairness: Fairness,
    pub time_in_queue: Percentiles,
    pub crashes: u64,
    pub restores: u64,
    pub resumes: u64,
    pub refreshes: u64,
    pub journal_records: u64,
    /// Group commits of the journal (each makes every record produced
    /// before it started durable).
    pub commits: u64,
    /// Journal records produced but not yet durable when the node crashed.
    pub records_lost_in_crashes: u64,
    pub snapshots: u64,
    pub pushes: Pushes,
    pub invariants: Invariants,
    pub events_processed: u64,
    /// Virtual time from 0 to the last event.
    pub virtual_duration_s: f64,
}

/// Genuine fans: people, not bots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Genuine {
    pub people: u64,
    /// People who bought (one order each), and their tickets.
    pub buyers: u64,
    pub tickets: u64,
    /// Buyers over people.
    pub purchase_rate: f64,
    /// From a buyer's arrival (before any defence) to its purchase, and
    /// its two parts: arrival to its place in line (what the defences
    /// add: proof of work, refused joins, waiting for the general sale;
    /// and retries after "full"), and place in line to purchase (the
    /// queue and the fan's own shopping and paying).
    pub arrival_to_purchase: Percentiles,
    pub arrival_to_join: Percentiles,
    pub join_to_purchase: Percentiles,
}

/// What each defence did. A defence that is off counts nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DefencesSummary {
    /// The defences on: `draw`, `codes`, `proof_of_work`, `ip_limits`.
    pub on: Vec<String>,
    pub draw: DrawCounts,
    pub codes: CodeCounts,
    pub proof_of_work: ProofOfWorkCounts,
    pub ip_limits: IpLimitCounts,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DrawCounts {
    /// Openings with a lobby drawn (the sale's, the general sale's).
    pub openings_drawn: u64,
    /// Accounts given a random place at one.
    pub places_drawn: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CodeCounts {
    pub people_with_code: u64,
    pub bot_accounts_with_code: u64,
    /// Joins not made for want of a code during the presale (all
    /// accounts), and how many of them were people's.
    pub joins_refused: u64,
    pub people_refused: u64,
    /// Of those, accounts that waited for the general sale, and accounts
    /// that went away (no general sale).
    pub waited_for_general_sale: u64,
    pub turned_away: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProofOfWorkCounts {
    /// Challenges solved on genuine fans' phones and on bots' farms.
    pub phone_solves: u64,
    pub bot_solves: u64,
    /// Core-seconds the bots' farms spent (their cost, in compute).
    pub bot_core_s: f64,
    /// How long each genuine fan's join waited for its phone (0 when it
    /// had solved ahead).
    pub people_join_delay: Percentiles,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IpLimitCounts {
    /// Addresses handed out (shared NAT addresses not counted), and the
    /// genuine fans behind a shared NAT.
    pub addresses: u64,
    pub people_behind_nat: u64,
    /// Joins refused (all accounts), those of people, and the people
    /// refused at least once.
    pub joins_refused: u64,
    pub people_refused: u64,
    pub people_ever_refused: u64,
    /// Accounts refused more than `retries_max` times, which gave up.
    pub accounts_gave_up: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    pub purchases: u64,
    /// Pairs of buyers who bought in the opposite order of their arrival.
    pub arrival_purchase_inversions: u64,
    pub arrival_purchase_inversion_share: f64,
    /// Pairs of buyers whose places in line invert their arrival order
    /// (a randomised pre-queue, retries after "full", crashes).
    pub arrival_position_inversions: u64,
    pub arrival_position_inversion_share: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pushes {
    pub total: u64,
    pub admitted_through: u64,
    pub full: u64,
    pub sold_out: u64,
    pub sale: u64,
    pub seats_changed: u64,
    pub hold_expiring: u64,
    pub hold_expired: u64,
    pub admission_expired: u64,
    pub purchased: u64,
    #[serde(default)]
    pub payment_declined: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Invariants {
    /// "ok", or "violated".
    pub verdict: String,
    pub violation: Option<String>,
    pub violation_step: Option<u64>,
    pub core_checks: u64,
    pub checked: Vec<String>,
}

/// One row of `timeseries.csv`: the state at `t_s`, and counts over the
/// interval that ends there. While the node is down (`node_up` 0, sale
/// "down"), the core's gauges (waiting, shopping, held) repeat their last
/// values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub t_s: u64,
    pub sale: &'static str,
    pub node_up: bool,
    pub full: bool,
    pub waiting: u64,
    pub shopping: u32,
    pub held: u32,
    pub sold: u32,
    pub arrivals: u64,
    pub joined: u64,
    pub turned_away: u64,
    pub admitted: u64,
    pub tickets_sold: u64,
    pub abandoned: u64,
    pub admitted_per_s: f64,
    pub sales_per_s: f64,
}

pub const CSV_HEADER: &str = "t_s,sale,node_up,full,waiting,shopping,held,sold,arrivals,joined,turned_away,admitted,tickets_sold,abandoned,admitted_per_s,sales_per_s";

/// `timeseries.csv` text.
#[must_use]
pub fn csv(samples: &[Sample]) -> String {
    let mut out = String::with_capacity(64 * (samples.len() + 1));
    out.push_str(CSV_HEADER);
    out.push('\n');
    for s in samples {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3}",
            s.t_s,
            s.sale,
            u8::from(s.node_up),
            u8::from(s.full),
            s.waiting,
            s.shopping,
            s.held,
            s.sold,
            s.arrivals,
            s.joined,
            s.turned_away,
            s.admitted,
            s.tickets_sold,
            s.abandoned,
            s.admitted_per_s,
            s.sales_per_s
        );
    }
    out
}

/// The columns of a `timeseries.csv` as numbers (the sale state as its
/// index in `SALE_STATES`), for comparing runs.
pub fn parse_csv(text: &str) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    anyhow::ensure!(header == CSV_HEADER, "not a timeseries.csv of this version");
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let row: Result<Vec<f64>, _> = line
            .split(',')
            .map(|cell| {
                cell.parse::<f64>().or_else(|_| {
                    SALE_STATES
                        .iter()
                        .position(|s| *s == cell)
                        .map(|p| p as f64)
                        .ok_or(())
                })
            })
            .collect();
        let row = row.map_err(|()| anyhow::anyhow!("timeseries.csv line {}: bad cell", i + 2))?;
        rows.push(row);
    }
    Ok(rows)
}

pub const SALE_STATES: [&str; 6] = [
    "scheduled",
    "on_sale",
    "paused",
    "sold_out",
    "closed",
    "down",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(keys: &[u64]) -> u64 {
        let mut n = 0;
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                n += u64::from(keys[i] > keys[j]);
            }
        }
        n
    }

    #[test]
    fn inversions_match_the_quadratic_count() {
        let mut rng = crate::rng::Rng::new(3, 3);
        for len in [0, 1, 2, 5, 50, 300] {
            let keys: Vec<u64> = (0..len).map(|_| rng.below(40)).collect();
            assert_eq!(inversions(&keys), naive(&keys), "{keys:?}");
        }
        assert_eq!(inversions(&[4, 3, 2, 1]), 6);
        assert_eq!(inversion_share(6, 4), 1.0);
    }

    #[test]
    fn percentiles_of_a_ramp() {
        let mut v: Vec<u32> = (1..=100).map(|s| s * 1000).collect();
        let p = Percentiles::of_ms(&mut v);
        assert_eq!((p.count, p.p50_s, p.max_s), (100, 51.0, 100.0));
    }
}
