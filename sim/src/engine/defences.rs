//! The defences against bots, as the gateway and the fan's page apply
//! them in front of the event. They are modelled here, in the shell, not
//! with the core's own pre-queue draw, presale and stamps (the scenario
//! check refuses those settings): a join that gets past them reaches
//! `EventCore::join` exactly as before.
//!
//! In the order a join meets them (see `fans.rs`, `try_join`):
//!
//! - **codes**: until the presale ends, a join needs a code. Genuine fans
//!   who registered hold one, bound to their one account; each bot account
//!   holds one if it passed registration screening. A fan without one
//!   does not try (its page says so): it waits for the general sale in a
//!   lobby, or, without a general sale, goes away.
//! - **proof of work**: every join carries the solution of a fresh
//!   challenge. A challenge is issued when the client asks (no sooner than
//!   its arrival, so the first join always waits for a solve) and is stale
//!   `challenge_ttl_s` after, so a client may solve ahead for a later
//!   attempt (a retry, an opening) from its last answer, but at most that
//!   long before it. A phone solves one at a time; a bot's accounts share
//!   one farm of `bot_cores` cores, modelled as a fluid queue (one solve
//!   takes `bot_solve_s`; the farm starts `bot_cores` of them per
//!   `bot_solve_s`).
//! - **per-address limits**: joins per address through a GCRA like the
//!   gateway's (`governor`, a quota per minute: a burst of that many, one
//!   more every 60 / n s); a refused join is retried after the answer's
//!   `Retry-After` (whole seconds, as the gateway rounds it) plus the
//!   client's reaction.
//! - **the draw**: everyone in a lobby at an opening gets a random place
//!   (the engine's lobbies; this module draws the general sale's).
//!
//! Every draw here comes from generators of its own, so that a run with
//! defences has the same crowd (same arrivals, same bots, same parties)
//! as the run without.
//!
//! Bounds: one `Guard` per account (only with proof of work or address
//! limits on); one bucket per address and one farm per bot, both dropped
//! once idle (a bucket whose time has passed is a fresh one), pruned when
//! the maps double.

use rustc_hash::FxHashMap;

use super::ms32;

use crate::behaviour;
use crate::metrics::{DefencesSummary, Percentiles};
use crate::rng::Rng;
use crate::scenario::{DefencesFile, IpLimitsFile, ProofOfWorkFile, ScenarioFile};

/// Generator streams of the defences (the engine's own use 1 to 4).
const CODES_STREAM: u64 = 11;
const NAT_STREAM: u64 = 12;
const SOLVE_STREAM: u64 = 13;
const DRAW_STREAM: u64 = 14;
const PAGE_STREAM: u64 = 15;
/// A genuine fan's page retries a refused join within this long after the
/// `Retry-After` (ms): people's pages are not timed to the millisecond.
const PAGE_RETRY_JITTER_MS: u64 = 1_000;
/// Buckets and farms kept before the first pruning.
const PRUNE_FIRST_AT: usize = 1 << 16;

/// What the codes say about a join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CodeGate {
    Pass,
    /// Wait in the lobby for the general sale.
    Wait,
    /// Presale only: this fan never joins.
    Never,
}

/// What the address limit says about a join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IpGate {
    Pass,
    /// Try again at this time.
    RetryAt(u64),
    /// Refused too often: the account gives up.
    GiveUp,
}

/// One account's state at the defences.
#[derive(Clone, Copy, Debug, Default)]
struct Guard {
    address: u32,
    /// From when the client may ask for its next challenge (its arrival,
    /// then its last answer).
    asked_ms: u32,
    ip_refusals: u8,
    /// The last join was refused by the address limit, which comes before
    /// the proof of work is checked: its solution is unused, and good
    /// until it goes stale.
    holds_solution: bool,
}

#[derive(Debug)]
pub(super) struct Defences {
    file: DefencesFile,
    react_ms: u64,
    /// When the general sale opens (the presale's end).
    general_at_ms: Option<u64>,
    /// Per account, by slot, when proof of work or address limits are on.
    guards: Vec<Guard>,
    /// GCRA's theoretical arrival time of each address.
    buckets: FxHashMap<u32, u64>,
    /// When each bot's farm (by the bot's rank) is next free.
    farms: FxHashMap<u32, u64>,
    prune_at: usize,
    /// Shared NAT addresses are `0..nat_addresses`; others are handed out
    /// from here.
    nat_addresses: u32,
    next_address: u32,
    /// The first address of the bot being created.
    bot_first_address: u32,
    /// Fans without a code waiting for the general sale, in arrival order.
    pub(super) general_lobby: Vec<u32>,
    codes_rng: Rng,
    nat_rng: Rng,
    solve_rng: Rng,
    pub(super) draw_rng: Rng,
    page_rng: Rng,
    people_join_delays_ms: Vec<u32>,
    pub(super) counts: DefencesSummary,
}

impl Defences {
    pub(super) fn new(sc: &ScenarioFile, seed: u64) -> Defences {
        let file = sc.defences.clone();
        let general_at_ms = file
            .codes
            .as_ref()
            .map(|c| sc.sale.opens_at_s * 1000 + (c.presale_s * 1000.0) as u64);
        let nat_addresses = file.ip_limits.as_ref().map_or(0, |l| {
            let people = sc.arrivals.fans as f64 * (1.0 - sc.bots.share);
            let shared = people * l.shared_nat_share / f64::from(l.nat_fans_per_ip);
            if l.shared_nat_share > 0.0 {
                (shared.ceil() as u32).max(1)
            } else {
                0
            }
        });
        let on = file.on().into_iter().map(str::to_owned).collect();
        Defences {
            file,
            react_ms: sc.bots.react_ms,
            general_at_ms,
            guards: Vec::new(),
            buckets: FxHashMap::default(),
            farms: FxHashMap::default(),
            prune_at: PRUNE_FIRST_AT,
            nat_addresses,
            next_address: nat_addresses,
            bot_first_address: 0,
            general_lobby: Vec::new(),
            codes_rng: Rng::new(seed, CODES_STREAM),
            nat_rng: Rng::new(seed, NAT_STREAM),
            solve_rng: Rng::new(seed, SOLVE_STREAM),
            draw_rng: Rng::new(seed, DRAW_STREAM),
            page_rng: Rng::new(seed, PAGE_STREAM),
            people_join_delays_ms: Vec::new(),
            counts: DefencesSummary {
                on,
                ..DefencesSummary::default()
            },
        }
    }

    pub(super) fn draw(&self) -> bool {
        self.file.draw
    }

    /// When the general sale opens, with codes on.
    pub(super) fn general_at_ms(&self) -> Option<u64> {
        self.general_at_ms
    }

    fn pow(&self) -> Option<&ProofOfWorkFile> {
        self.file.proof_of_work.as_ref()
    }

    fn limits(&self) -> Option<&IpLimitsFile> {
        self.file.ip_limits.as_ref()
    }

    fn guarded(&self) -> bool {
        self.pow().is_some() || self.limits().is_some()
    }

    /// A new account `slot`, the `index`-th of its person or bot,
    /// arriving `now`: whether it holds a code.
    pub(super) fn account(&mut self, slot: u32, bot: bool, index: u32, now: u64) -> bool {
        let coded = self.draw_code(bot);
        if !self.guarded() {
            return coded;
        }
        debug_assert_eq!(self.guards.len(), slot as usize);
        let address = self.address(bot, index);
        self.guards.push(Guard {
            address,
            asked_ms: ms32(now),
            ip_refusals: 0,
            holds_solution: false,
        });
        coded
    }

    fn draw_code(&mut self, bot: bool) -> bool {
        let Some(codes) = self.file.codes.as_ref() else {
            return false;
        };
        let share = if bot {
            codes.bot_account_verified_share
        } else {
            codes.fan_registered_share
        };
        let coded = self.codes_rng.chance(share);
        let c = &mut self.counts.codes;
        match (coded, bot) {
            (true, true) => c.bot_accounts_with_code += 1,
            (true, false) => c.people_with_code += 1,
            _ => {}
        }
        coded
    }

    fn address(&mut self, bot: bool, index: u32) -> u32 {
        let Some(limits) = self.file.ip_limits.as_ref() else {
            return 0;
        };
        if bot {
            let pool = limits.bot_ip_pool;
            if index == 0 {
                self.bot_first_address = self.next_address;
                self.next_address += pool;
                self.counts.ip_limits.addresses += u64::from(pool);
            }
            return self.bot_first_address + index % pool;
        }
        if self.nat_addresses > 0 && self.nat_rng.chance(limits.shared_nat_share) {
            self.counts.ip_limits.people_behind_nat += 1;
            return self.nat_rng.below(u64::from(self.nat_addresses)) as u32;
        }
        self.next_address += 1;
        self.counts.ip_limits.addresses += 1;
        self.next_address - 1
    }

    /// The client may ask for its next challenge from `now` (it just had
    /// an answer).
    pub(super) fn asked(&mut self, slot: u32, now: u64) {
        if let Some(g) = self.guards.get_mut(slot as usize) {
            g.asked_ms = ms32(now);
        }
    }

    /// May an account with (or without) a code join `now`?
    pub(super) fn code_gate(&mut self, coded: bool, bot: bool, now: u64) -> CodeGate {
        let (Some(codes), Some(general_at)) = (self.file.codes.as_ref(), self.general_at_ms) else {
            return CodeGate::Pass;
        };
        if coded || now >= general_at {
            return CodeGate::Pass;
        }
        let general_sale = codes.general_sale;
        let c = &mut self.counts.codes;
        c.joins_refused += 1;
        if !bot {
            c.people_refused += 1;
        }
        if general_sale {
            c.waited_for_general_sale += 1;
            CodeGate::Wait
        } else {
            c.turned_away += 1;
            CodeGate::Never
        }
    }

    /// When the solution this join needs is ready (`now` or earlier: at
    /// once). A person's phone solves from when it may ask; a bot's
    /// accounts queue on its farm.
    pub(super) fn solved_at(&mut self, slot: u32, rank: u32, bot: bool, now: u64) -> u64 {
        let Some(pow) = self.file.proof_of_work.as_ref() else {
            return now;
        };
        let ttl_ms = (pow.challenge_ttl_s * 1000.0) as u64;
        let guard = &mut self.guards[slot as usize];
        let asked = u64::from(guard.asked_ms);
        if std::mem::take(&mut guard.holds_solution) && now.saturating_sub(asked) <= ttl_ms {
            return now;
        }
        let start = asked.max(now.saturating_sub(ttl_ms)).min(now);
        let p = &mut self.counts.proof_of_work;
        if bot {
            let solve_ms = (pow.bot_solve_s * 1000.0) as u64;
            let share_ms = solve_ms / u64::from(pow.bot_cores);
            p.bot_solves += 1;
            p.bot_core_s += solve_ms as f64 / 1000.0;
            let free_at = self.farms.entry(rank).or_insert(0);
            let begin = start.max(*free_at);
            *free_at = begin + share_ms;
            self.prune(now);
            return (start + solve_ms).max(begin + share_ms);
        }
        p.phone_solves += 1;
        let solve_ms = behaviour::span_ms(&mut self.solve_rng, pow.phone_solve_s, 1000.0);
        let ready = start + solve_ms;
        let delay = ready.saturating_sub(now);
        self.people_join_delays_ms.push(ms32(delay));
        ready
    }

    /// The address limit on a join sent `now`.
    pub(super) fn ip_gate(&mut self, slot: u32, bot: bool, now: u64) -> IpGate {
        let Some(limits) = self.file.ip_limits.as_ref() else {
            return IpGate::Pass;
        };
        let per_min = u64::from(limits.joins_per_ip_per_min);
        let retries_max = limits.retries_max;
        let interval_ms = 60_000 / per_min;
        let tolerance_ms = interval_ms * (per_min - 1);
        let guard = &mut self.guards[slot as usize];
        let tat = self.buckets.entry(guard.address).or_insert(0);
        let t = (*tat).max(now);
        if t - now <= tolerance_ms {
            *tat = t + interval_ms;
            self.prune(now);
            return IpGate::Pass;
        }
        let wait_ms = t - now - tolerance_ms;
        let c = &mut self.counts.ip_limits;
        c.joins_refused += 1;
        if !bot {
            c.people_refused += 1;
            if guard.ip_refusals == 0 {
                c.people_ever_refused += 1;
            }
        }
        if guard.ip_refusals >= retries_max {
            c.accounts_gave_up += 1;
            return IpGate::GiveUp;
        }
        guard.ip_refusals += 1;
        guard.asked_ms = ms32(now);
        guard.holds_solution = true;
        // The gateway's Retry-After: whole seconds, rounded up past the wait.
        let retry_after_ms = (wait_ms / 1000 + 1) * 1000;
        let react_ms = if bot {
            self.react_ms
        } else {
            self.page_rng.below(PAGE_RETRY_JITTER_MS + 1)
        };
        IpGate::RetryAt(now + retry_after_ms + react_ms)
    }

    /// Forget buckets and farms that are idle by `now` (equivalent to
    /// fresh ones: a bucket whose time has passed, a farm free before any
    /// solve could start from now on) once the maps have doubled since the
    /// last pruning.
    fn prune(&mut self, now: u64) {
        if self.buckets.len() + self.farms.len() < self.prune_at {
            return;
        }
        let ttl_ms = self
            .pow()
            .map_or(0, |p| (p.challenge_ttl_s * 1000.0) as u64);
        self.buckets.retain(|_, tat| *tat > now);
        self.farms
            .retain(|_, free_at| *free_at > now.saturating_sub(ttl_ms));
        self.prune_at = (2 * (self.buckets.len() + self.farms.len())).max(PRUNE_FIRST_AT);
    }

    /// The counts, with the phones' delays as percentiles.
    pub(super) fn summary(&mut self) -> DefencesSummary {
        let mut counts = std::mem::take(&mut self.counts);
        counts.proof_of_work.bot_core_s = crate::metrics::round6(counts.proof_of_work.bot_core_s);
        counts.proof_of_work.people_join_delay =
            Percentiles::of_ms(&mut self.people_join_delays_ms);
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defences(extra: &str) -> Defences {
        let text = format!(
            "name = \"t\"\nvenue = \"v.json\"\n[arrivals]\nfans = 100\n\
             curve = {{ kind = \"poisson\", rate_per_s = 1 }}\n[bots]\nreact_ms = 20\n{extra}"
        );
        let file: ScenarioFile = toml::from_str(&text).unwrap();
        Defences::new(&file, 1)
    }

    #[test]
    fn an_address_gets_a_burst_then_one_join_per_interval_and_is_told_when() {
        let mut d = defences("[defences.ip_limits]\njoins_per_ip_per_min = 6\nbot_ip_pool = 1\n");
        for index in 0..8 {
            d.account(index, true, index, 0);
        }
        for slot in 0..6 {
            assert_eq!(d.ip_gate(slot, true, 0), IpGate::Pass);
        }
        // The next is due in 10 s: told 11 s (whole seconds, past the
        // wait, as the gateway says), plus the bot's reaction.
        assert_eq!(d.ip_gate(6, true, 0), IpGate::RetryAt(11_020));
        assert_eq!(d.ip_gate(6, true, 10_000), IpGate::Pass);
        assert_eq!(d.ip_gate(7, true, 10_000), IpGate::RetryAt(10_000 + 11_020));
        assert_eq!(d.counts.ip_limits.joins_refused, 2);
        assert_eq!(d.counts.ip_limits.people_refused, 0);
    }

    #[test]
    fn a_bots_accounts_queue_on_its_farm_and_retries_are_solved_ahead() {
        let mut d = defences(
            "[defences.proof_of_work]\nphone_solve_s = { min = 2, max = 2 }\nbot_solve_s = 1\n\
             bot_cores = 2\nchallenge_ttl_s = 30\n",
        );
        for index in 0..4 {
            d.account(index, true, index, 0);
        }
        let ready: Vec<u64> = (0..4).map(|slot| d.solved_at(slot, 0, true, 0)).collect();
        // Two cores: two solves a second, none shorter than a solve.
        assert_eq!(ready, [1_000, 1_000, 1_500, 2_000]);
        // Told "full" at 2 s, retrying at 60 s: solved from 30 s (the
        // challenge's lifetime), ready in time.
        d.asked(0, 2_000);
        assert!(d.solved_at(0, 0, true, 60_000) <= 60_000);
        // A person solves once on arrival, on its phone.
        d.account(4, false, 0, 5_000);
        assert_eq!(d.solved_at(4, 1, false, 5_000), 7_000);
        assert_eq!(d.counts.proof_of_work.bot_solves, 5);
        assert_eq!(d.counts.proof_of_work.phone_solves, 1);
    }

    #[test]
    fn without_a_code_a_fan_waits_for_the_general_sale() {
        let mut d = defences(
            "[sale]\nopens_at_s = 60\n[defences.codes]\npresale_s = 600\n\
             fan_registered_share = 1\nbot_account_verified_share = 0\n",
        );
        assert_eq!(d.general_at_ms(), Some(660_000));
        assert!(d.account(0, false, 0, 0), "every fan registered");
        assert!(!d.account(1, true, 0, 0), "no bot account passed");
        assert_eq!(d.code_gate(true, false, 60_000), CodeGate::Pass);
        assert_eq!(d.code_gate(false, true, 60_000), CodeGate::Wait);
        assert_eq!(d.code_gate(false, true, 660_000), CodeGate::Pass);
        assert_eq!(d.counts.codes.joins_refused, 1);
    }
}
