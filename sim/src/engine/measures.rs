//! Checks and measures: violations, the core's own invariant checks,
//! samples for the time series, and the run's summary.

use onsale_actors::EventCore;
use onsale_schema::message::Push;

use super::{Marks, Purchase, RunOutput, Said, Sim, Violation};
use crate::metrics::{self, Fairness, Invariants, Percentiles, Sample};

impl Sim<'_> {
    pub(super) fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                seed: self.seed,
                step: self.step,
                at_ms: self.now,
                what,
            });
        }
    }

    pub(super) fn check(&mut self, r: Result<(), String>) {
        if let Err(what) = r {
            self.fail(what);
        }
    }

    pub(super) fn check_core(&mut self) {
        let Some(core) = self.core.as_ref() else {
            return;
        };
        self.t.invariants.core_checks += 1;
        let r = core
            .check_invariants()
            .map_err(|e| format!("event core: {e}"));
        let (core_sold, ledger_sold) = (core.seats().sold(), self.ledger.sold());
        // Sales whose records are not durable yet are not told yet.
        let unsaid: usize = self
            .gate
            .iter()
            .map(|said| match said {
                Said::Push(Push::Purchased { seats, .. }) => seats.len(),
                _ => 0,
            })
            .sum();
        self.check(r);
        if u64::from(core_sold) != u64::from(ledger_sold) + unsaid as u64 {
            self.fail(format!(
                "the core sold {core_sold} tickets, buyers were told of {ledger_sold} \
                 and {unsaid} wait for the journal"
            ));
        }
    }

    pub(super) fn sample_until(&mut self, t: u64) {
        let every_ms = self.sc.run.sample_every_s * 1000;
        while self.next_sample_ms <= t {
            let at = self.next_sample_ms;
            self.take_sample(at, every_ms);
            self.next_sample_ms += every_ms;
        }
    }

    pub(super) fn take_sample(&mut self, at: u64, every_ms: u64) {
        let t = &self.t;
        let now = Marks {
            arrivals: t.arrivals,
            joined: t.joined,
            turned_away: t.turned_away_full + t.turned_away_sold_out,
            admitted: t.admitted,
            tickets: u64::from(t.tickets_sold),
            abandoned: t.abandoned_waiting + t.abandoned_checkout,
        };
        let last = self.marks;
        let per_s = |n: u64| metrics::round6(n as f64 * 1000.0 / every_ms as f64);
        let mut sample = Sample {
            t_s: at / 1000,
            sale: "down",
            node_up: self.core.is_some(),
            full: self.edge.full,
            waiting: self.last_gauges.0,
            shopping: self.last_gauges.1,
            held: self.last_gauges.2,
            arrivals: now.arrivals - last.arrivals,
            joined: now.joined - last.joined,
            turned_away: now.turned_away - last.turned_away,
            admitted: now.admitted - last.admitted,
            tickets_sold: now.tickets - last.tickets,
            abandoned: now.abandoned - last.abandoned,
            admitted_per_s: per_s(now.admitted - last.admitted),
            sales_per_s: per_s(now.tickets - last.tickets),
            sold: self.ledger.sold(),
        };
        if let Some(core) = self.core.as_ref() {
            sample.sale = core.sale().as_str();
            sample.waiting = core.waiting();
            sample.shopping = core.shopping();
            sample.held = core.seats().held();
            sample.sold = core.seats().sold();
            self.last_gauges = (sample.waiting, sample.shopping, sample.held);
        }
        self.samples.push(sample);
        self.marks = now;
    }

    pub(super) fn finish(&mut self) {
        let every_ms = self.sc.run.sample_every_s * 1000;
        let last = (self.now / every_ms + 1) * every_ms;
        self.sample_until(last);
        if self.violation.is_some() {
            return;
        }
        // The writer finishes the commits under way: what the event said
        // by the end reaches the fans before the last checks.
        while let Some(seq) = self.core.as_ref().map(EventCore::journal_seq) {
            if self.gate.is_empty() {
                break;
            }
            self.gate.durable(seq);
            self.flush();
        }
        self.check_core();
        if let Some(core) = self.core.as_ref() {
            let r = self.ledger.matches_core(core.orders(), core.seats().sold());
            self.check(r);
        }
    }

    pub(super) fn output(mut self) -> RunOutput {
        let mut t = std::mem::take(&mut self.t);
        t.sell_through = metrics::round6(f64::from(t.tickets_sold) / f64::from(t.capacity));
        t.sale_opened_at_s = self.opened_at.unwrap_or(0) as f64 / 1000.0;
        t.sold_out_after_s = self
            .sold_out_at
            .map(|at| at.saturating_sub(self.opened_at.unwrap_or(0)) as f64 / 1000.0);
        let opened = self.opened_at.unwrap_or(0);
        let target = u64::from(t.capacity) * 99 / 100;
        let mut sold = 0u64;
        t.sold_99_after_s = self.purchases.iter().find_map(|p| {
            sold += u64::from(p.tickets);
            (sold >= target.max(1)).then(|| p.at_ms.saturating_sub(opened) as f64 / 1000.0)
        });
        t.bot_ticket_share = if t.tickets_sold == 0 {
            0.0
        } else {
            metrics::round6(t.bot_tickets as f64 / f64::from(t.tickets_sold))
        };
        t.genuine.people = t.people;
        let [total, to_join, from_join] = &mut self.genuine_waits_ms;
        t.genuine.arrival_to_purchase = Percentiles::of_ms(total);
        t.genuine.arrival_to_join = Percentiles::of_ms(to_join);
        t.genuine.join_to_purchase = Percentiles::of_ms(from_join);
        t.genuine.buyers = t.genuine.arrival_to_purchase.count;
        t.genuine.purchase_rate = if t.people == 0 {
            0.0
        } else {
            metrics::round6(t.genuine.buyers as f64 / t.people as f64)
        };
        t.defences = self.defences.summary();
        t.fairness = fairness(&self.purchases);
        t.time_in_queue = Percentiles::of_ms(&mut self.waits_ms);
        t.events_processed = self.step;
        t.virtual_duration_s = self.now as f64 / 1000.0;
        t.invariants = Invariants {
            verdict: if self.violation.is_some() {
                "violated".into()
            } else {
                "ok".into()
            },
            violation: self.violation.as_ref().map(ToString::to_string),
            violation_step: self.violation.as_ref().map(|v| v.step),
            core_checks: t.invariants.core_checks,
            checked: CHECKED.iter().map(|s| (*s).to_owned()).collect(),
        };
        RunOutput {
            summary: t,
            samples: self.samples,
            queue_waits_ms: self.waits_ms,
            purchases: self.purchases,
            violation: self.violation,
        }
    }
}

/// What the referee checks, as listed in `summary.json`.
const CHECKED: [&str; 8] = [
    "no seat sold twice (every acknowledged sale, across crashes)",
    "tickets sold never exceed capacity",
    "positions strictly increase",
    "FIFO admission: nobody admitted while a lower position the simulator knows of waits",
    "a payment submitted in time and confirmed within the provider timeout is sold; its seats are never released meanwhile",
    "a waiting fan keeps its position through reloads and crashes (queue tokens)",
    "restore from snapshot + journal brings back exactly the durable state",
    "EventCore::check_invariants, periodically and at the end; the core's orders are exactly the sales acknowledged",
];

fn fairness(purchases: &[Purchase]) -> Fairness {
    let ranks: Vec<u64> = purchases.iter().map(|p| u64::from(p.rank)).collect();
    let n = ranks.len() as u64;
    let by_purchase = metrics::inversions(&ranks);
    let mut by_position: Vec<&Purchase> = purchases.iter().collect();
    by_position.sort_by_key(|p| (p.position, p.rank));
    let ranks: Vec<u64> = by_position.iter().map(|p| u64::from(p.rank)).collect();
    let by_position = metrics::inversions(&ranks);
    Fairness {
        purchases: n,
        arrival_purchase_inversions: by_purchase,
        arrival_purchase_inversion_share: metrics::inversion_share(by_purchase, n),
        arrival_position_inversions: by_position,
        arrival_position_inversion_share: metrics::inversion_share(by_position, n),
    }
}
