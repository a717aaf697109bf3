//! The simulation: deliveries in time order, retries, counters and reports.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

/// A delivery due at a simulated time.
pub(crate) struct Delivery {
    pub(crate) at: f64,
    pub(crate) seq: u64,
    pub(crate) kind: Kind,
    pub(crate) body: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Start,
    Accept,
    Message,
    Close,
}

impl PartialEq for Delivery {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Delivery {}

impl PartialOrd for Delivery {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delivery {
    /// Reversed, so that the max-heap pops the earliest delivery first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .total_cmp(&self.at)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) chats: u64,
    pub(crate) unanswered: u64,
    pub(crate) starts: u64,
    pub(crate) accepts: u64,
    pub(crate) messages: u64,
    pub(crate) closes: u64,
    pub(crate) observed: u64,
    pub(crate) duplicate: u64,
    pub(crate) ignored: u64,
    pub(crate) rejected: u64,
    pub(crate) errors: u64,
}

pub(crate) struct Simulation {
    pub(crate) args: Args,
    pub(crate) client: Client,
    pub(crate) rng: Rng,
    /// Wall-clock and simulated UNIX time at the start.
    pub(crate) real_start: Instant,
    pub(crate) sim_start: f64,
    pub(crate) pending: BinaryHeap<Delivery>,
    pub(crate) seq: u64,
    pub(crate) next_arrival: f64,
    pub(crate) next_chat_id: u64,
    /// Chats waiting for an answer per department, for `ahead_chats`.
    pub(crate) queued: Vec<usize>,
    /// Simulated times at which a queued chat leaves its department's queue.
    pub(crate) dequeues: BinaryHeap<std::cmp::Reverse<(u64, usize)>>,
    pub(crate) counters: Counters,
    /// Failed attempts in a row, and the pause before the next one.
    pub(crate) failures: u64,
    pub(crate) pause: Duration,
    /// When the next summary line is due.
    pub(crate) next_report: Instant,
}

/// The first pause after a failed delivery; it doubles up to [`MAX_PAUSE`].
pub(crate) const FIRST_PAUSE: Duration = Duration::from_millis(100);
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(10);

impl Simulation {
    pub(crate) fn new(args: Args, client: Client) -> Simulation {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let midnight = (now.as_secs() / 86_400 * 86_400) as f64;
        let sim_start = match args.start_hour {
            Some(h) => midnight + h * 3600.0,
            None => now.as_secs_f64(),
        };
        let seed = args.seed.unwrap_or(now.as_nanos() as u64);
        let departments = args.departments.len();
        let mut sim = Simulation {
            rng: Rng(seed),
            client,
            real_start: Instant::now(),
            sim_start,
            pending: BinaryHeap::new(),
            seq: 0,
            next_arrival: sim_start,
            // Ids from the start time in milliseconds: a restarted simulator sends new chats, not
            // retries of old ones.
            next_chat_id: now.as_millis() as u64,
            queued: vec![0; departments + 1],
            dequeues: BinaryHeap::new(),
            counters: Counters::default(),
            failures: 0,
            pause: FIRST_PAUSE,
            next_report: Instant::now() + args.report_every,
            args,
        };
        sim.next_arrival = sim.draw_arrival(sim_start);
        sim
    }

    pub(crate) fn sim_now(&self) -> f64 {
        self.sim_start + self.real_start.elapsed().as_secs_f64() * self.args.speed
    }

    pub(crate) fn real_due(&self, sim_time: f64) -> Instant {
        self.real_start
            + Duration::from_secs_f64(((sim_time - self.sim_start) / self.args.speed).max(0.0))
    }

    pub(crate) fn hour_of(t: f64) -> f64 {
        t.rem_euclid(86_400.0) / 3600.0
    }

    /// The next arrival after `after`: a Poisson process at the peak rate, thinned by the load of
    /// the day (the standard way to draw a process whose rate changes with time).
    pub(crate) fn draw_arrival(&mut self, after: f64) -> f64 {
        let peak_per_second = self.args.peak_per_hour / 3600.0;
        let mut t = after;
        loop {
            t += self.rng.exponential(1.0 / peak_per_second);
            if self.rng.chance(daily_load(Self::hour_of(t))) {
                return t;
            }
        }
    }

    pub(crate) fn schedule(&mut self, at: f64, kind: Kind, body: String) {
        self.seq += 1;
        let duplicate = self.rng.chance(self.args.duplicate_share);
        if duplicate {
            let retry_after = 5.0 + self.rng.exponential(20.0);
            self.seq += 1;
            self.pending.push(Delivery {
                at: at + retry_after,
                seq: self.seq,
                kind,
                body: body.clone(),
            });
        }
        self.pending.push(Delivery {
            at,
            seq: self.seq,
            kind,
            body,
        });
    }

    /// A new chat at `at`: draw its department, wait, agent and duration, and schedule its events.
    pub(crate) fn arrive(&mut self, at: f64) {
        let load = daily_load(Self::hour_of(at));
        let n = self.args.departments.len();
        // Department by Zipf-like weights 1, 1/2, 1/3...; one chat in twenty has none.
        let slot = if self.rng.chance(0.05) {
            n
        } else {
            let total: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
            let mut pick = self.rng.uniform() * total;
            (0..n)
                .find(|&k| {
                    pick -= 1.0 / (k + 1) as f64;
                    pick < 0.0
                })
                .unwrap_or(n - 1)
        };
        let department = self.args.departments.get(slot).cloned().unwrap_or_default();
        while let Some(std::cmp::Reverse((t, d))) = self.dequeues.peek().copied() {
            if t as f64 > at {
                break;
            }
            self.dequeues.pop();
            self.queued[d] = self.queued[d].saturating_sub(1);
        }
        let ahead = self.queued[slot];

        // Busier hours mean longer waits and more visitors who give up.
        let busy = 0.5 + load;
        let answered = !self
            .rng
            .chance((self.args.unanswered_share * busy).min(1.0));
        let (agent, wait, duration) = if answered {
            let mut wait = self.rng.log_normal(self.args.median_wait * busy, 0.9);
            if self.rng.chance(0.03) {
                wait = self.rng.log_normal(self.args.median_wait * 15.0, 0.5);
            }
            let k = self.rng.below(self.args.agents as usize);
            let role = match k {
                0 => "Administrator",
                1 => "Supervisor",
                _ => "Operator",
            };
            let agent = format!("agent-{}{k:02}", slot + 1);
            let duration = self.rng.log_normal(self.args.median_duration, 0.7);
            (
                Some((agent, role)),
                wait.min(3600.0),
                duration.min(4.0 * 3600.0),
            )
        } else {
            let gave_up = self.rng.log_normal(90.0, 0.8).min(3600.0);
            (None, gave_up, 0.0)
        };
        self.queued[slot] += 1;
        self.dequeues
            .push(std::cmp::Reverse(((at + wait) as u64, slot)));

        self.next_chat_id += 1;
        let chat = Chat {
            id: self.next_chat_id,
            department,
            started: at,
            agent,
            wait,
            duration,
            ahead,
        };
        self.counters.chats += 1;
        self.schedule(at, Kind::Start, chat.start_body());
        let answered_at = at + wait;
        let closed_at = answered_at + duration;
        if chat.agent.is_some() {
            self.schedule(answered_at, Kind::Accept, chat.accept_body());
            let messages = self.rng.poisson(self.args.messages);
            for i in 0..messages {
                let t = answered_at + self.rng.uniform() * duration;
                let body = chat.message_body(&self.args.account_id, t, i % 2 == 0);
                self.schedule(t, Kind::Message, body);
            }
        } else {
            self.counters.unanswered += 1;
        }
        let without_id = self.rng.chance(self.args.invalid_share);
        let body = chat.close_body(&self.args.account_id, without_id);
        self.schedule(closed_at, Kind::Close, body);
    }

    pub(crate) fn run(&mut self) {
        let deadline = self.args.duration.map(|d| self.real_start + d);
        println!(
            "acquire-simulator: sending to {} at {}x speed, from simulated {} UTC",
            self.args.url,
            self.args.speed,
            vendor_date(self.sim_start)
        );
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            self.report_when_due();
            let next_delivery = self.pending.peek().map_or(f64::INFINITY, |d| d.at);
            let at = next_delivery.min(self.next_arrival);
            let due = self.real_due(at);
            if due > now {
                let mut wake = due.min(self.next_report);
                if let Some(d) = deadline {
                    wake = wake.min(d);
                }
                std::thread::sleep(wake.saturating_duration_since(now));
                continue;
            }
            if self.next_arrival <= next_delivery {
                let arrival = self.next_arrival;
                self.arrive(arrival);
                self.next_arrival = self.draw_arrival(arrival);
            } else {
                let delivery = self.pending.pop().expect("peeked above");
                self.deliver(&delivery, deadline);
            }
        }
        self.report();
        println!("acquire-simulator: done");
    }

    /// Send one delivery, retrying with a growing pause while the exporter is unreachable or
    /// answers 5xx (as the vendor retries), until it is taken or the run's time is up. The pause
    /// carries over to the next delivery until one succeeds, so an outage is not hammered.
    pub(crate) fn deliver(&mut self, delivery: &Delivery, deadline: Option<Instant>) {
        loop {
            let problem = match self.client.post(&delivery.body) {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    if self.failures > 0 {
                        eprintln!(
                            "acquire-simulator: {} answers again after {} failed attempts",
                            self.args.url, self.failures
                        );
                    }
                    self.failures = 0;
                    self.pause = FIRST_PAUSE;
                    self.count(delivery.kind, &answer.body);
                    return;
                }
                Ok(answer) if answer.status >= 500 || matches!(answer.status, 408 | 429) => {
                    format!("answered {}: {}", answer.status, answer.body.trim())
                }
                Ok(answer) => {
                    self.counters.rejected += 1;
                    if self.counters.rejected.is_power_of_two() {
                        eprintln!(
                            "acquire-simulator: {} refused a {:?} event with {}: {} ({} refused so far)",
                            self.args.url,
                            delivery.kind,
                            answer.status,
                            answer.body.trim(),
                            self.counters.rejected
                        );
                    }
                    return;
                }
                Err(e) => e.to_string(),
            };
            self.counters.errors += 1;
            self.failures += 1;
            if self.failures.is_power_of_two() {
                eprintln!(
                    "acquire-simulator: {}: {problem} ({} failed attempts in a row); retrying in {:?}",
                    self.args.url, self.failures, self.pause
                );
            }
            if let Some(d) = deadline {
                if Instant::now() + self.pause >= d {
                    std::thread::sleep(d.saturating_duration_since(Instant::now()));
                    return;
                }
            }
            std::thread::sleep(self.pause);
            self.pause = (self.pause * 2).min(MAX_PAUSE);
            self.report_when_due();
        }
    }

    pub(crate) fn count(&mut self, kind: Kind, answer: &str) {
        let c = &mut self.counters;
        match kind {
            Kind::Start => c.starts += 1,
            Kind::Accept => c.accepts += 1,
            Kind::Message => c.messages += 1,
            Kind::Close => c.closes += 1,
        }
        let outcome = serde_json::from_str::<serde_json::Value>(answer)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_owned));
        match outcome.as_deref() {
            Some("duplicate") => c.duplicate += 1,
            Some("ignored") => c.ignored += 1,
            _ => c.observed += 1,
        }
    }

    pub(crate) fn report_when_due(&mut self) {
        if Instant::now() >= self.next_report {
            self.report();
            self.next_report += self.args.report_every;
        }
    }

    pub(crate) fn report(&self) {
        let now = self.sim_now();
        let c = &self.counters;
        println!(
            "simulated {} UTC, load {:.0}% | chats {} (unanswered {}) | sent start {} accept {} message {} close {} | exporter: observed {} duplicate {} ignored {} refused {} | errors {} | pending {}",
            vendor_date(now),
            daily_load(Self::hour_of(now)) * 100.0,
            c.chats,
            c.unanswered,
            c.starts,
            c.accepts,
            c.messages,
            c.closes,
            c.observed,
            c.duplicate,
            c.ignored,
            c.rejected,
            c.errors,
            self.pending.len()
        );
    }
}
