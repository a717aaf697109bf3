//! Erlang A: how many agents a demand needs when visitors give up. The Palm M/M/N+M queue
//! (Garnett, Mandelbaum and Reiman, "Designing a call center with impatient customers", 2002),
//! next to the Erlang C of the parent module.
//!
//! # The model
//! Chats arrive at random (Poisson, rate λ); handle times are exponential (mean AHT, rate
//! μ = 1/AHT); the N agents take the one queue first come, first served; and every visitor in
//! the queue leaves after an exponential patience (mean P, rate θ = 1/P) unless an agent
//! answers first. A visitor's patience is how long they would wait, not how long they did.
//!
//! # The figures
//! - P(wait): the share of arriving chats that find every agent busy.
//! - P(abandon): the share of arriving chats that leave before an answer, θ·Lq/λ with Lq the
//!   mean number waiting.
//! - Service level for a wait T: the share of *all* arriving chats that are answered within T.
//!   An abandoned chat counts as not answered, however quickly it left.
//! - Average speed of answer (ASA): the mean wait of the chats that were answered.
//! - Mean wait: the mean time in queue of all arriving chats, abandoned ones included (their
//!   time until they left), Lq/λ by Little's law. This is what pyworkforce's `ErlangA` calls
//!   its average speed of answer.
//! - Occupancy: the share of the agents' time spent on chats, λ·(1 − P(abandon))·AHT / N.
//!
//! Every figure is finite for any load, also at and above N agents: the visitors who give up
//! keep the queue finite. As P grows without bound every figure tends to Erlang C's (where
//! Erlang C has one, N > A).
//!
//! # How it is computed
//! The number of chats in the system is a birth-death chain: up at rate λ, down at rate
//! min(n, N)·μ + max(n − N, 0)·θ. Its stationary weights follow from the ratios
//! π(n)/π(n − 1) = λ / down(n), never from factorials. The ratios fall as n grows, so the weights
//! rise to one mode and fall after it: the walk starts at the mode with weight 1 and goes both
//! ways, so no weight exceeds 1 and nothing overflows. Each way stops once what is left beyond,
//! bounded by a geometric series, is below [`TOLERANCE`] of the mass summed (queue lengths
//! included). The walk visits a few standard deviations around the mode, O(√(A·(1 + P/AHT)))
//! states, whatever the load.
//!
//! The service level and the ASA need the wait a visitor would be offered if they never gave up,
//! V. With k visitors ahead it is a sum of exponentials of rates Nμ + jθ (j = k … 0); summed over
//! the stationary distribution its density on v > 0 is
//! f(v) = λ·π(N − 1)·exp(−Nμv + (λ/θ)(1 − e^{−θv})), of mass P(wait) (check: its Laplace
//! transform is the sum over k term by term). A visitor is answered within T when V ≤ T and V is
//! shorter than their own patience, so SL(T) = 1 − P(wait) + ∫₀ᵀ e^{−θv} f(v) dv. The density is
//! normalised by its mass P(wait) rather than through π(N − 1), and integrated by adaptive
//! Gauss–Kronrod quadrature in log space around its peak (the integrand is log-concave), to a
//! relative [`QUADRATURE_TOLERANCE`].
//!
//! Agents handling several chats at once are modelled as in the parent module: the load and the
//! handle time are divided by the concurrency; the patience is the visitor's and is not.

use super::{MAX_AGENTS, MAX_LOAD_ERLANGS, Result, StaffingError, Target, agent_load};

/// Truncation of the stationary distribution: the neglected mass (weighted by the queue length
/// too) is below this share of the mass kept.
pub const TOLERANCE: f64 = 1e-15;

/// Relative accuracy the wait integrals are computed to.
pub const QUADRATURE_TOLERANCE: f64 = 1e-12;

/// Longest mean patience [`ErlangA`] takes, in handle times: past it the chain would need
/// millions of states for figures that are Erlang C's to about six digits (at 10⁵ handle times
/// the golden case already is Erlang C to its printed precision). [`Model::for_patience`] turns
/// a longer patience into Erlang C.
pub const MAX_PATIENCE_RATIO: f64 = 1e6;

/// Most states one walk visits: more than the limits above can need (about 2·10⁷), so it only
/// guards against an endless loop.
const MAX_STATES: u64 = 200_000_000;

/// How far (in natural log units) below its peak the integrand is treated as zero on the right.
const LOG_CUTOFF: f64 = 45.0;

/// Most pieces the adaptive quadrature splits an integral into.
const MAX_PIECES: usize = 400;

/// Which model a staffing figure comes from, the `model` label of `acquire_agents_required`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Model {
    /// Erlang C: nobody gives up.
    ErlangC,
    /// Erlang A with the visitors' mean patience, in seconds.
    ErlangA {
        /// Mean patience in seconds, finite and above 0.
        patience_seconds: f64,
    },
}

impl Model {
    /// The label value: `erlang_c` or `erlang_a`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ErlangC => "erlang_c",
            Self::ErlangA { .. } => "erlang_a",
        }
    }

    /// Erlang A when a patience estimate exists and the model takes it (finite, above 0, at most
    /// [`MAX_PATIENCE_RATIO`] times the handle time one agent spends per chat,
    /// `handle_time / concurrency`); else Erlang C, which a longer patience tends to.
    pub fn for_patience(patience_seconds: Option<f64>, handle_time: f64, concurrency: f64) -> Self {
        let per_agent = handle_time / concurrency.max(1.0);
        match patience_seconds {
            Some(p) if p.is_finite() && p > 0.0 && p <= MAX_PATIENCE_RATIO * per_agent => {
                Self::ErlangA {
                    patience_seconds: p,
                }
            }
            _ => Self::ErlangC,
        }
    }

    /// The mean patience, for Erlang A.
    pub fn patience_seconds(&self) -> Option<f64> {
        match self {
            Self::ErlangC => None,
            Self::ErlangA { patience_seconds } => Some(*patience_seconds),
        }
    }

    /// Smallest number of agents meeting `target` under this model: [`super::agents_required`]
    /// or [`agents_required`].
    pub fn agents_required(
        &self,
        arrivals_per_second: f64,
        handle_time: f64,
        target: Target,
        concurrency: f64,
    ) -> Result<u32> {
        match self {
            Self::ErlangC => {
                super::agents_required(arrivals_per_second, handle_time, target, concurrency)
            }
            Self::ErlangA { patience_seconds } => agents_required(
                arrivals_per_second,
                handle_time,
                *patience_seconds,
                target,
                concurrency,
            ),
        }
    }
}

/// Smallest number of agents meeting the target when visitors give up after a mean
/// `patience` (seconds, like `handle_time`), for agents handling `concurrency` chats at once
/// (load and handle time divided by it, as in [`super::agents_required`]). 0 when the load is 0.
///
/// The service level rises with the agents, so the search doubles from the load until the
/// target is met and then bisects: about 2·log₂(N) evaluations.
pub fn agents_required(
    arrivals_per_second: f64,
    handle_time: f64,
    patience: f64,
    target: Target,
    concurrency: f64,
) -> Result<u32> {
    let target = target.validate()?;
    let (load, handle) = agent_load(
        arrivals_per_second,
        handle_time,
        concurrency,
        ["arrival rate", "handle time", "concurrency"],
    )?;
    if load == 0.0 {
        check_patience(patience, None, "patience")?;
        return Ok(0);
    }
    ErlangA::named(load, handle, patience, "patience")?.agents_required(target)
}

fn check_patience(patience: f64, handle_time: Option<f64>, name: &'static str) -> Result<()> {
    let within = handle_time.is_none_or(|h| patience <= MAX_PATIENCE_RATIO * h);
    if patience.is_finite() && patience > 0.0 && within {
        Ok(())
    } else {
        Err(StaffingError::OutOfRange {
            name,
            value: patience,
            expected: "a finite number of seconds above 0, at most 1000000 handle times",
        })
    }
}

/// A queue of impatient visitors: the offered load one agent pool sees, the handle time and the
/// visitors' mean patience. Build it once and ask [`ErlangA::at`] for each number of agents.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErlangA {
    load: f64,
    handle_time: f64,
    patience: f64,
}

impl ErlangA {
    /// The queue for an offered load (Erlangs, after any concurrency, at most
    /// [`MAX_LOAD_ERLANGS`]), a mean handle time (above 0) and a mean patience (above 0, at most
    /// [`MAX_PATIENCE_RATIO`] handle times), the two times in one unit (seconds here).
    pub fn new(offered_load: f64, handle_time: f64, patience: f64) -> Result<Self> {
        Self::named(offered_load, handle_time, patience, "patience")
    }

    /// [`ErlangA::new`] naming the patience input (a flag name) in its error.
    pub(crate) fn named(
        offered_load: f64,
        handle_time: f64,
        patience: f64,
        patience_name: &'static str,
    ) -> Result<Self> {
        if !(offered_load.is_finite() && offered_load >= 0.0) {
            return Err(StaffingError::OutOfRange {
                name: "offered load",
                value: offered_load,
                expected: "a finite number of Erlangs, 0 or more",
            });
        }
        if offered_load > MAX_LOAD_ERLANGS {
            return Err(StaffingError::LoadTooLarge {
                load: offered_load,
                max: MAX_LOAD_ERLANGS,
            });
        }
        if !(handle_time.is_finite() && handle_time > 0.0) {
            return Err(StaffingError::OutOfRange {
                name: "handle time",
                value: handle_time,
                expected: "a finite number of seconds above 0",
            });
        }
        check_patience(patience, Some(handle_time), patience_name)?;
        Ok(ErlangA {
            load: offered_load,
            handle_time,
            patience,
        })
    }

    /// The offered load, in Erlangs.
    pub fn load(&self) -> f64 {
        self.load
    }

    /// The figures with `agents` agents.
    pub fn at(&self, agents: u32) -> Staffed {
        Staffed::new(*self, agents)
    }

    /// Share of all arriving chats answered within `target_wait` seconds, with `agents` agents.
    pub fn service_level(&self, agents: u32, target_wait: f64) -> f64 {
        self.at(agents).service_level(target_wait)
    }

    /// Smallest number of agents whose service level meets the target; 0 when the load is 0.
    pub fn agents_required(&self, target: Target) -> Result<u32> {
        let target = target.validate()?;
        if self.load == 0.0 {
            return Ok(0);
        }
        let meets = |agents: u32| self.service_level(agents, target.wait_seconds) >= target.share;
        // No agent answers nobody: 0 always fails, so `low` is a failing staffing.
        let mut low = 0;
        // The load is at most MAX_LOAD_ERLANGS, so its ceiling fits in a u32.
        let mut high = (self.load.ceil() as u32).max(1);
        while !meets(high) {
            if high >= MAX_AGENTS {
                return Err(StaffingError::Unreachable {
                    target: target.label(),
                    max: MAX_AGENTS,
                });
            }
            low = high;
            high = high.saturating_mul(2).min(MAX_AGENTS);
        }
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if meets(middle) {
                high = middle;
            } else {
                low = middle;
            }
        }
        Ok(high)
    }
}

/// The Erlang A figures at one number of agents; times in the unit of the handle time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Staffed {
    queue: ErlangA,
    agents: u32,
    wait_probability: f64,
    /// Mean number of chats waiting, Lq.
    queue_length: f64,
    /// The offered-wait density, when some chats wait.
    wait: Option<WaitDensity>,
}

impl Staffed {
    fn new(queue: ErlangA, agents: u32) -> Self {
        let load = queue.load;
        // Times in handle times from here on: μ = 1, θ = AHT / P.
        let rate = queue.handle_time / queue.patience;
        let (wait_probability, queue_length) = if load == 0.0 {
            (0.0, 0.0)
        } else if agents == 0 {
            // Nobody is answered: everyone waits out their patience, Poisson(A·P/AHT) in queue.
            (1.0, load / rate)
        } else {
            stationary(load, agents, rate)
        };
        let wait = (load > 0.0 && agents > 0 && wait_probability > 0.0)
            .then(|| WaitDensity::new(load, agents, rate));
        Staffed {
            queue,
            agents,
            wait_probability,
            queue_length,
            wait,
        }
    }

    /// The number of agents.
    pub fn agents(&self) -> u32 {
        self.agents
    }

    /// Share of arriving chats that find every agent busy.
    pub fn probability_of_waiting(&self) -> f64 {
        self.wait_probability
    }

    /// Mean number of chats waiting.
    pub fn mean_queue_length(&self) -> f64 {
        self.queue_length
    }

    /// Share of arriving chats that give up before an answer: θ·Lq/λ.
    pub fn probability_of_abandoning(&self) -> f64 {
        if self.queue.load == 0.0 {
            return 0.0;
        }
        let rate = self.queue.handle_time / self.queue.patience;
        (rate * self.queue_length / self.queue.load).clamp(0.0, 1.0)
    }

    /// Mean time in queue of all arriving chats, abandoned ones included: Lq/λ.
    pub fn mean_wait(&self) -> f64 {
        if self.queue.load == 0.0 {
            return 0.0;
        }
        self.queue_length / self.queue.load * self.queue.handle_time
    }

    /// Share of the agents' time spent on chats: λ·(1 − P(abandon))·AHT / N; 0 without agents.
    pub fn occupancy(&self) -> f64 {
        if self.agents == 0 {
            return 0.0;
        }
        let carried = self.queue.load * (1.0 - self.probability_of_abandoning());
        (carried / f64::from(self.agents)).clamp(0.0, 1.0)
    }

    /// Share of all arriving chats answered within `target_wait` (abandoned ones are not
    /// answered): 1 − P(wait) + ∫₀ᵀ e^{−θv} f(v) dv. A negative or NaN wait reads as 0.
    pub fn service_level(&self, target_wait: f64) -> f64 {
        if self.queue.load == 0.0 {
            return 1.0;
        }
        if self.agents == 0 {
            return 0.0;
        }
        let immediately = 1.0 - self.wait_probability;
        let Some(density) = &self.wait else {
            return immediately.clamp(0.0, 1.0);
        };
        let wait = if target_wait > 0.0 {
            target_wait / self.queue.handle_time
        } else {
            0.0
        };
        let within = density.answered_within(wait);
        (immediately + self.wait_probability * within).clamp(0.0, 1.0)
    }

    /// Mean wait of the chats that were answered; `None` when none is (no agents).
    pub fn average_speed_of_answer(&self) -> Option<f64> {
        if self.queue.load == 0.0 {
            return Some(0.0);
        }
        if self.agents == 0 {
            return None;
        }
        let Some(density) = &self.wait else {
            return Some(0.0);
        };
        let (answered_after_waiting, waited_sum) = density.answered_and_their_wait();
        let answered = 1.0 - self.wait_probability + self.wait_probability * answered_after_waiting;
        if answered <= 0.0 {
            return None;
        }
        Some(self.wait_probability * waited_sum / answered * self.queue.handle_time)
    }
}

/// Neumaier's compensated sum: the walk adds millions of terms of very different sizes.
#[derive(Clone, Copy, Default)]
struct Sum {
    sum: f64,
    compensation: f64,
}

impl Sum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// P(wait) and Lq of the chain with load `a` (Erlangs), `agents` ≥ 1 and abandonment rate `r`
/// per handle time, from its stationary weights walked out of the mode.
fn stationary(a: f64, agents: u32, r: f64) -> (f64, f64) {
    let n_agents = u64::from(agents);
    let agents_f = f64::from(agents);
    // Departures per handle time in state n.
    let down = |n: u64| -> f64 {
        if n <= n_agents {
            n as f64
        } else {
            agents_f + (n - n_agents) as f64 * r
        }
    };
    // π(n)/π(n − 1), n ≥ 1.
    let ratio = |n: u64| a / down(n);
    // The last state whose ratio is ≥ 1; the float estimate is then corrected by a step or two.
    let mut mode = if a <= agents_f {
        a.floor() as u64
    } else {
        n_agents + ((a - agents_f) / r).floor() as u64
    };
    while ratio(mode + 1) >= 1.0 {
        mode += 1;
    }
    while mode > 0 && ratio(mode) < 1.0 {
        mode -= 1;
    }
    let mut sums = Sums {
        agents: n_agents,
        ..Sums::default()
    };
    sums.add(mode, 1.0);
    let mut visited = 1u64;
    // Upwards: Σ_{j>n} π(j)·(1 + (j − N)⁺) ≤ π(n)·Σ_{i≥1} q^i·(1 + k + i), q = ratio(n + 1).
    let (mut n, mut weight) = (mode, 1.0f64);
    loop {
        n += 1;
        weight *= ratio(n);
        sums.add(n, weight);
        visited += 1;
        let q = ratio(n + 1);
        let k = n.saturating_sub(n_agents) as f64;
        let tail = weight * ((1.0 + k) * q / (1.0 - q) + q / ((1.0 - q) * (1.0 - q)));
        if weight == 0.0 || tail <= TOLERANCE * sums.mass.value() || visited >= MAX_STATES {
            break;
        }
    }
    // Downwards: Σ_{j<n} π(j)·(1 + (j − N)⁺) ≤ π(n)·(1 + k)·q/(1 − q), q = down(n)/a.
    let (mut n, mut weight) = (mode, 1.0f64);
    while n > 0 {
        weight /= ratio(n);
        n -= 1;
        sums.add(n, weight);
        visited += 1;
        if n == 0 {
            break;
        }
        let q = down(n) / a;
        let k = n.saturating_sub(n_agents) as f64;
        let tail = weight * (1.0 + k) * q / (1.0 - q);
        if weight == 0.0 || tail <= TOLERANCE * sums.mass.value() || visited >= MAX_STATES {
            break;
        }
    }
    let total = sums.mass.value();
    (
        (sums.waiting.value() / total).clamp(0.0, 1.0),
        sums.queued.value() / total,
    )
}

/// The sums the walk keeps: all weights, those of states where chats wait, and those weighted
/// by the number waiting.
#[derive(Default)]
struct Sums {
    agents: u64,
    mass: Sum,
    waiting: Sum,
    queued: Sum,
}

impl Sums {
    fn add(&mut self, n: u64, weight: f64) {
        self.mass.add(weight);
        if n >= self.agents {
            self.waiting.add(weight);
            self.queued.add((n - self.agents) as f64 * weight);
        }
    }
}

/// The density of the offered wait V on v > 0, in handle times, around its peak v₀:
/// with u = v − v₀ and c = λ·e^{−θv₀} = min(A, N), f ∝ exp(h(u)) where
/// h(u) = −N·u − (c/θ)·(e^{−θu} − 1), h(0) = 0 is the maximum, and e^{−θv} = (c/A)·e^{−θu}.
#[derive(Clone, Copy, Debug, PartialEq)]
struct WaitDensity {
    agents: f64,
    /// θ per handle time.
    rate: f64,
    /// min(A, N).
    carried: f64,
    /// A.
    load: f64,
    /// v₀ = ln(A/N)/θ when A > N, else 0.
    peak: f64,
    /// Breakpoints in u: from −v₀ to where h has fallen by LOG_CUTOFF on the right.
    breaks: [f64; 4],
    /// ∫ exp(h(u)) du over the breaks: the mass P(wait), unnormalised.
    mass: f64,
}

impl WaitDensity {
    fn new(a: f64, agents: u32, r: f64) -> Self {
        let n = f64::from(agents);
        let carried = a.min(n);
        let peak = if a > n { (a / n).ln() / r } else { 0.0 };
        let h = move |u: f64| -n * u - carried / r * (-r * u).exp_m1();
        // The scale of h near its peak: its slope there, or its curvature.
        let width = 1.0 / (n - carried).max((carried * r).sqrt());
        let mut right = width;
        for _ in 0..200 {
            if h(right) < -LOG_CUTOFF {
                break;
            }
            right *= 2.0;
        }
        // Where h has fallen by LOG_CUTOFF on the left, when the peak is inside (0, ∞).
        let mut left = width.min(peak);
        for _ in 0..200 {
            if left >= peak || h(-left) < -LOG_CUTOFF {
                break;
            }
            left = (left * 2.0).min(peak);
        }
        let breaks = [-peak, -left, 0.0, right];
        let mut density = WaitDensity {
            agents: n,
            rate: r,
            carried,
            load: a,
            peak,
            breaks,
            mass: 0.0,
        };
        density.mass = integrate(|u| density.weight(u), &breaks);
        density
    }

    fn weight(&self, u: f64) -> f64 {
        let r = self.rate;
        (-self.agents * u - self.carried / r * (-r * u).exp_m1()).exp()
    }

    /// e^{−θv} at v = v₀ + u.
    fn stays(&self, u: f64) -> f64 {
        self.carried / self.load * (-self.rate * u).exp()
    }

    /// P(answered within `wait` | waits) = ∫₀ᵂ e^{−θv} f(v) dv / P(wait).
    fn answered_within(&self, wait: f64) -> f64 {
        if wait <= 0.0 {
            return 0.0;
        }
        let end = (wait - self.peak).min(self.breaks[3]);
        let breaks: Vec<f64> = self
            .breaks
            .iter()
            .copied()
            .filter(|&b| b < end)
            .chain(std::iter::once(end))
            .collect();
        if breaks.len() < 2 {
            return 0.0;
        }
        integrate(|u| self.stays(u) * self.weight(u), &breaks) / self.mass
    }

    /// P(answered | waits) and E[V·1{answered} | waits], V in handle times.
    fn answered_and_their_wait(&self) -> (f64, f64) {
        let answered = integrate(|u| self.stays(u) * self.weight(u), &self.breaks);
        let waited = integrate(
            |u| (self.peak + u).max(0.0) * self.stays(u) * self.weight(u),
            &self.breaks,
        );
        (answered / self.mass, waited / self.mass)
    }
}

/// Gauss–Kronrod nodes on [−1, 1] (the positive half, from the outside in; the last is 0).
const KRONROD_NODES: [f64; 8] = [
    0.991_455_371_120_812_6,
    0.949_107_912_342_758_5,
    0.864_864_423_359_769_1,
    0.741_531_185_599_394_4,
    0.586_087_235_467_691_1,
    0.405_845_151_377_397_2,
    0.207_784_955_007_898_5,
    0.0,
];

/// The 15-point Kronrod weights for [`KRONROD_NODES`].
const KRONROD_WEIGHTS: [f64; 8] = [
    0.022_935_322_010_529_22,
    0.063_092_092_629_978_55,
    0.104_790_010_322_250_2,
    0.140_653_259_715_525_9,
    0.169_004_726_639_267_9,
    0.190_350_578_064_785_4,
    0.204_432_940_075_298_9,
    0.209_482_141_084_727_8,
];

/// The 7-point Gauss weights, for the odd Kronrod nodes (1, 3, 5) and 0.
const GAUSS_WEIGHTS: [f64; 4] = [
    0.129_484_966_168_869_7,
    0.279_705_391_489_276_7,
    0.381_830_050_505_118_9,
    0.417_959_183_673_469_4,
];

#[derive(Clone, Copy, Debug)]
struct Piece {
    from: f64,
    to: f64,
    value: f64,
    error: f64,
}

fn kronrod(f: &impl Fn(f64) -> f64, from: f64, to: f64) -> Piece {
    let centre = 0.5 * (from + to);
    let half = 0.5 * (to - from);
    let middle = f(centre);
    let mut kronrod = middle * KRONROD_WEIGHTS[7];
    let mut gauss = middle * GAUSS_WEIGHTS[3];
    for (j, (&node, &weight)) in KRONROD_NODES[..7]
        .iter()
        .zip(&KRONROD_WEIGHTS[..7])
        .enumerate()
    {
        let pair = f(centre - half * node) + f(centre + half * node);
        kronrod += weight * pair;
        if j % 2 == 1 {
            gauss += GAUSS_WEIGHTS[j / 2] * pair;
        }
    }
    Piece {
        from,
        to,
        value: kronrod * half,
        error: ((kronrod - gauss) * half).abs(),
    }
}

/// ∫ f over the consecutive intervals of `breaks` (ascending), splitting the piece of largest
/// error estimate (the Gauss–Kronrod difference) until the estimates sum to at most
/// [`QUADRATURE_TOLERANCE`] of the value.
fn integrate(f: impl Fn(f64) -> f64, breaks: &[f64]) -> f64 {
    let mut pieces: Vec<Piece> = breaks
        .windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| kronrod(&f, w[0], w[1]))
        .collect();
    loop {
        let value: f64 = pieces.iter().map(|p| p.value).sum();
        let error: f64 = pieces.iter().map(|p| p.error).sum();
        if error <= QUADRATURE_TOLERANCE * value.abs() || pieces.len() >= MAX_PIECES {
            return value;
        }
        let Some(worst) = pieces
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.error.total_cmp(&y.1.error))
            .map(|(i, _)| i)
        else {
            return value;
        };
        let piece = pieces.swap_remove(worst);
        let middle = 0.5 * (piece.from + piece.to);
        if middle <= piece.from || middle >= piece.to {
            // Too narrow to split: keep its estimate as it is.
            pieces.push(Piece {
                error: 0.0,
                ..piece
            });
            continue;
        }
        pieces.push(kronrod(&f, piece.from, middle));
        pieces.push(kronrod(&f, middle, piece.to));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{average_speed_of_answer, erlang_c, service_level};
    use super::*;
    use proptest::prelude::*;

    /// `actual` printed with `decimals` decimals is `expected`.
    fn assert_printed(what: &str, actual: f64, expected: f64, decimals: i32) {
        let half_ulp = 0.5 * 10f64.powi(-decimals) + 1e-12;
        assert!(
            (actual - expected).abs() <= half_ulp,
            "{what}: got {actual}, published {expected} to {decimals} decimals"
        );
    }

    fn queue(load: f64, handle_time: f64, patience: f64) -> ErlangA {
        ErlangA::new(load, handle_time, patience).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The published case: rodrigo-arenas/pyworkforce, pyworkforce/queuing/tests/
    /// test_abandonment.py, test_erlanga_regression_metrics: 100 chats per 30 min, AHT 3 min,
    /// patience 5 min, 14 agents, 20 s. pyworkforce's `average_speed_of_answer` (0.069919 min)
    /// is Lq/λ, the mean wait of all arrivals here.
    #[test]
    fn published_pyworkforce_case() {
        let load = super::super::offered_load(100.0 / 1800.0, 180.0);
        let staffed = queue(load, 180.0, 300.0).at(14);
        assert_printed("P(wait)", staffed.probability_of_waiting(), 0.14526, 5);
        assert_printed(
            "P(abandon)",
            staffed.probability_of_abandoning(),
            0.013984,
            6,
        );
        assert_printed("occupancy", staffed.occupancy(), 0.704297, 6);
        assert_printed("service level", staffed.service_level(20.0), 0.916792, 6);
        assert_printed(
            "mean wait, minutes",
            staffed.mean_wait() / 60.0,
            0.069919,
            6,
        );
        // Not published: the answered chats' mean wait is below the mean wait of everyone,
        // since the ones who gave up waited longest.
        let asa = staffed.average_speed_of_answer().unwrap_or(f64::NAN);
        assert_printed("ASA", asa, 3.8785, 4);
    }

    /// An independent computation of the service level: the tagged visitor's own chain (k ahead
    /// moves to k − 1 at rate N + kθ, is answered from 0 at rate N, leaves at rate θ), solved by
    /// uniformization, summed over the stationary distribution, as pyworkforce does.
    fn tagged_service_level(a: f64, agents: u32, r: f64, wait: f64) -> f64 {
        let n = f64::from(agents);
        let mut weights = vec![1.0f64];
        let mut k = 0usize;
        loop {
            k += 1;
            let down = (k as f64).min(n) + (k as f64 - n).max(0.0) * r;
            let next = weights[k - 1] * a / down;
            weights.push(next);
            if k as f64 > n && next < 1e-18 * weights.iter().sum::<f64>() {
                break;
            }
        }
        let total: f64 = weights.iter().sum();
        let first_queued = agents as usize;
        let ahead_max = weights.len() - 1 - first_queued;
        let uniform = n + (ahead_max as f64 + 1.0) * r;
        let steps = (uniform * wait + 12.0 * (uniform * wait).sqrt() + 60.0) as usize;
        // served[j]: P(answered within m uniformized steps | j ahead).
        let mut served = vec![0.0f64; ahead_max + 1];
        let mut poisson = (-uniform * wait).exp();
        let mut within = vec![0.0f64; ahead_max + 1];
        for m in 1..=steps {
            let previous = served.clone();
            for j in 0..=ahead_max {
                let forward = n + j as f64 * r;
                let stay = 1.0 - (forward + r) / uniform;
                let next = if j == 0 { 1.0 } else { previous[j - 1] };
                served[j] = forward / uniform * next + stay * previous[j];
            }
            poisson *= uniform * wait / m as f64;
            for j in 0..=ahead_max {
                within[j] += poisson * served[j];
            }
        }
        let immediately: f64 = weights[..first_queued].iter().sum::<f64>() / total;
        let delayed: f64 = (0..=ahead_max)
            .map(|j| weights[first_queued + j] / total * within[j])
            .sum();
        immediately + delayed
    }

    #[test]
    fn service_level_agrees_with_the_tagged_visitor_chain() {
        // (load, agents, handle time, patience, wait): below, at and above the load.
        let cases = [
            ("published case", 10.0, 14, 180.0, 300.0, 20.0),
            ("at the load", 14.0, 14, 180.0, 300.0, 20.0),
            ("above the load", 20.0, 14, 180.0, 300.0, 20.0),
            ("impatient, long target", 8.0, 7, 300.0, 30.0, 120.0),
            ("patient, short handle", 3.0, 4, 60.0, 600.0, 15.0),
        ];
        for (name, load, agents, handle, patience, wait) in cases {
            let got = queue(load, handle, patience).service_level(agents, wait);
            let independent = tagged_service_level(load, agents, handle / patience, wait / handle);
            assert!(
                (got - independent).abs() < 1e-9,
                "{name}: {got} vs tagged chain {independent}"
            );
        }
    }

    #[test]
    fn figures_agree_with_each_other() {
        // P(answered) from the wait density equals 1 − θ·Lq/λ from the distribution, and the
        // mean wait of all is the answered share of waits plus the abandoned share.
        for (load, agents, patience) in [(10.0, 14, 300.0), (20.0, 14, 60.0), (5.0, 2, 900.0)] {
            let staffed = queue(load, 180.0, patience).at(agents);
            let density = staffed
                .wait
                .unwrap_or_else(|| panic!("{load}, {agents}: no wait"));
            let (answered_after_waiting, _) = density.answered_and_their_wait();
            let p_wait = staffed.probability_of_waiting();
            let answered = 1.0 - p_wait + p_wait * answered_after_waiting;
            assert!(
                (answered - (1.0 - staffed.probability_of_abandoning())).abs() < 1e-10,
                "{load}, {agents}: {answered} vs {}",
                1.0 - staffed.probability_of_abandoning()
            );
            // E[min(V, τ)] = ∫ (1 − e^{−θv})/θ f(v) dv, against Lq/λ.
            let r = 180.0 / patience;
            let at_least = integrate(
                |u| {
                    let v = density.peak + u;
                    -(-r * v).exp_m1() / r * density.weight(u)
                },
                &density.breaks,
            ) / density.mass
                * p_wait
                * 180.0;
            assert!(
                (at_least - staffed.mean_wait()).abs() < 1e-8 * staffed.mean_wait(),
                "{load}, {agents}: {at_least} vs {}",
                staffed.mean_wait()
            );
        }
    }

    #[test]
    fn tends_to_erlang_c_as_patience_grows() {
        // The golden case of the parent module: A = 10, N = 14, T = 20 s, AHT = 180 s.
        let patient = queue(10.0, 180.0, 180.0 * MAX_PATIENCE_RATIO).at(14);
        assert_printed("P(wait)", patient.probability_of_waiting(), 0.17413, 5);
        assert_printed("service level", patient.service_level(20.0), 0.88835, 5);
        let asa = patient.average_speed_of_answer().unwrap_or(f64::NAN);
        assert_printed("ASA", asa, 7.836, 3);
        assert_printed("mean wait", patient.mean_wait(), 7.836, 3);
        assert_printed("occupancy", patient.occupancy(), 10.0 / 14.0, 6);
        assert!(patient.probability_of_abandoning() < 1e-7);
        // Every figure closes in on Erlang C's as the patience grows, at every stable staffing.
        for agents in [11, 14, 15, 20, 25] {
            let c = erlang_c(10.0, agents);
            let level = service_level(10.0, agents, 20.0, 180.0);
            let asa = average_speed_of_answer(10.0, agents, 180.0);
            let mut previous = [f64::INFINITY; 3];
            for ratio in [1.0, 10.0, 1e2, 1e3, 1e4, 1e5, 1e6] {
                let staffed = queue(10.0, 180.0, 180.0 * ratio).at(agents);
                let gaps = [
                    (staffed.probability_of_waiting() - c).abs(),
                    (staffed.service_level(20.0) - level).abs(),
                    (staffed.average_speed_of_answer().unwrap_or(f64::NAN) - asa).abs(),
                ];
                for (gap, before) in gaps.iter().zip(previous) {
                    assert!(
                        *gap <= before,
                        "{agents} agents, patience {ratio} AHT: {gaps:?} after {previous:?}"
                    );
                }
                previous = gaps;
            }
            assert!(
                previous[0] < 1e-5 && previous[1] < 1e-5,
                "{agents}: {previous:?}"
            );
            assert!(previous[2] < 1e-3 * asa.max(1.0), "{agents}: {previous:?}");
        }
    }

    #[test]
    fn loads_at_and_above_the_agents_give_finite_figures() {
        for (load, agents) in [(14.0, 14), (14.5, 14), (20.0, 14), (100.0, 14), (3.0, 1)] {
            let staffed = queue(load, 180.0, 300.0).at(agents);
            let p_wait = staffed.probability_of_waiting();
            let p_abandon = staffed.probability_of_abandoning();
            let level = staffed.service_level(20.0);
            let occupancy = staffed.occupancy();
            let asa = staffed.average_speed_of_answer().unwrap_or(f64::NAN);
            let mean_wait = staffed.mean_wait();
            let what = format!("A = {load}, N = {agents}: {staffed:?}");
            assert!(p_wait > 0.5 && p_wait <= 1.0, "{what}");
            assert!(p_abandon > 0.0 && p_abandon < 1.0, "{what}");
            // What the agents carry, A·(1 − P(abandon)), never exceeds them.
            assert!(
                load * (1.0 - p_abandon) <= f64::from(agents) + 1e-9,
                "{what}"
            );
            assert!(level > 0.0 && level < 1.0 - p_abandon, "{what}");
            assert!(occupancy > 0.8 && occupancy <= 1.0, "{what}");
            assert!(asa.is_finite() && asa > 0.0, "{what}");
            assert!(mean_wait < 300.0, "{what}");
        }
    }

    #[test]
    fn thousands_of_erlangs_match_the_fluid_limit() {
        // Half the agents the load needs: half give up (P(abandon) → 1 − N/A), the queue holds
        // (A − N)·P/AHT chats, so everyone waits P·(1 − N/A) on average, and the answered ones
        // were offered ln(A/N)·P.
        let started = std::time::Instant::now();
        for load in [5000.0, 250_000.0] {
            let agents = (load / 2.0) as u32;
            let staffed = queue(load, 180.0, 300.0).at(agents);
            let what = format!("A = {load}: {staffed:?}");
            assert!(
                (staffed.probability_of_abandoning() - 0.5).abs() < 1e-3,
                "{what}"
            );
            assert!((staffed.mean_wait() - 150.0).abs() < 0.5, "{what}");
            let asa = staffed.average_speed_of_answer().unwrap_or(f64::NAN);
            assert!((asa - 300.0 * 2f64.ln()).abs() < 2.0, "{what}");
            assert!(staffed.service_level(20.0) < 1e-6, "{what}");
            assert!((staffed.occupancy() - 1.0).abs() < 1e-3, "{what}");
            // Well staffed, the same load is Erlang C's with a little abandonment.
            let staffed = queue(load, 180.0, 300.0).at((load * 1.05) as u32);
            let level = staffed.service_level(20.0);
            assert!(level > 0.99 && level <= 1.0, "{staffed:?}");
        }
        let target = Target {
            share: 0.8,
            wait_seconds: 20.0,
        };
        let erlang_c = super::super::agents_required(1000.0 / 180.0, 180.0, target, 1.0);
        let erlang_a = agents_required(1000.0 / 180.0, 180.0, 300.0, target, 1.0);
        assert_eq!(erlang_c, Ok(1011));
        // Below the load: with N < A the queue settles where the offered wait is about
        // ln(A/N)·P, under 20 s from N = A·e^{−20/300} ≈ 936 on, and few give up.
        assert!(
            matches!(erlang_a, Ok(n) if (936..1000).contains(&n)),
            "{erlang_a:?}"
        );
        let huge = agents_required(MAX_LOAD_ERLANGS / 180.0, 180.0, 300.0, target, 1.0);
        let fluid = MAX_LOAD_ERLANGS * (-20.0f64 / 300.0).exp();
        assert!(
            matches!(huge, Ok(n) if f64::from(n) > fluid && f64::from(n) < MAX_LOAD_ERLANGS),
            "{huge:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn agents_required_is_the_smallest_meeting_the_target() {
        let cases = [
            // (name, arrivals per second, handle, patience, share, wait, concurrency)
            (
                "published case",
                100.0 / 1800.0,
                180.0,
                300.0,
                0.8,
                20.0,
                1.0,
            ),
            (
                "impatient visitors",
                100.0 / 1800.0,
                180.0,
                20.0,
                0.8,
                20.0,
                1.0,
            ),
            (
                "half answered",
                200.0 / 3600.0,
                600.0,
                120.0,
                0.5,
                60.0,
                1.0,
            ),
            ("concurrency", 300.0 / 3600.0, 600.0, 240.0, 0.9, 30.0, 2.5),
        ];
        for (name, arrivals, handle, patience, share, wait, concurrency) in cases {
            let target = Target {
                share,
                wait_seconds: wait,
            };
            let agents = agents_required(arrivals, handle, patience, target, concurrency)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let per_agent = handle / concurrency;
            let model = queue(arrivals * handle / concurrency, per_agent, patience);
            assert!(
                model.service_level(agents, wait) >= share,
                "{name}: {agents}"
            );
            assert!(
                model.service_level(agents - 1, wait) < share,
                "{name}: {agents}"
            );
        }
        // The published case needs 13 agents at 80 % in 20 s, one fewer than Erlang C's 14.
        let target = Target {
            share: 0.8,
            wait_seconds: 20.0,
        };
        assert_eq!(
            agents_required(100.0 / 1800.0, 180.0, 300.0, target, 1.0),
            Ok(13)
        );
        assert_eq!(agents_required(0.0, 180.0, 300.0, target, 1.0), Ok(0));
        assert_eq!(agents_required(0.1, 0.0, 300.0, target, 1.0), Ok(0));
    }

    #[test]
    fn edge_cases() {
        let nobody = queue(0.0, 180.0, 300.0).at(3);
        assert_eq!(nobody.probability_of_waiting(), 0.0);
        assert_eq!(nobody.service_level(20.0), 1.0);
        assert_eq!(nobody.mean_wait(), 0.0);
        assert_eq!(nobody.occupancy(), 0.0);
        let no_agents = queue(5.0, 180.0, 300.0).at(0);
        assert_eq!(no_agents.probability_of_waiting(), 1.0);
        assert_eq!(no_agents.probability_of_abandoning(), 1.0);
        assert_eq!(no_agents.service_level(20.0), 0.0);
        assert_eq!(no_agents.average_speed_of_answer(), None);
        assert!((no_agents.mean_wait() - 300.0).abs() < 1e-9);
        // A zero target asks only whether a chat waits.
        let staffed = queue(10.0, 180.0, 300.0).at(14);
        assert_eq!(
            staffed.service_level(0.0),
            1.0 - staffed.probability_of_waiting()
        );
        // Many agents: nobody waits, to double precision.
        let idle = queue(10.0, 180.0, 300.0).at(200);
        assert_eq!(idle.service_level(20.0), 1.0);
        assert_eq!(idle.average_speed_of_answer(), Some(0.0));
    }

    #[test]
    fn model_choice_and_labels() {
        assert_eq!(Model::ErlangC.label(), "erlang_c");
        let a = Model::for_patience(Some(300.0), 180.0, 1.0);
        assert_eq!(
            a,
            Model::ErlangA {
                patience_seconds: 300.0
            }
        );
        assert_eq!(a.label(), "erlang_a");
        assert_eq!(a.patience_seconds(), Some(300.0));
        assert_eq!(Model::for_patience(None, 180.0, 1.0), Model::ErlangC);
        assert_eq!(Model::for_patience(Some(0.0), 180.0, 1.0), Model::ErlangC);
        assert_eq!(
            Model::for_patience(Some(f64::NAN), 180.0, 1.0),
            Model::ErlangC
        );
        // Past a million handle times (per agent: 90 s at two chats) the patience is Erlang C.
        assert_eq!(Model::for_patience(Some(1e8), 180.0, 2.0), Model::ErlangC);
        let target = Target::DEFAULT;
        assert_eq!(
            a.agents_required(100.0 / 1800.0, 180.0, target, 1.0),
            agents_required(100.0 / 1800.0, 180.0, 300.0, target, 1.0)
        );
        assert_eq!(
            Model::ErlangC.agents_required(100.0 / 1800.0, 180.0, target, 1.0),
            super::super::agents_required(100.0 / 1800.0, 180.0, target, 1.0)
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let target = Target::DEFAULT;
        let cases: [(&str, Result<u32>, &str); 5] = [
            (
                "zero patience",
                agents_required(0.1, 180.0, 0.0, target, 1.0),
                "patience must be a finite number of seconds above 0, at most 1000000 \
                 handle times, got 0",
            ),
            (
                "infinite patience",
                agents_required(0.1, 180.0, f64::INFINITY, target, 1.0),
                "patience must be a finite number of seconds above 0, at most 1000000 \
                 handle times, got inf",
            ),
            (
                "patience past a million handle times",
                agents_required(0.1, 180.0, 2e8, target, 1.0),
                "patience must be a finite number of seconds above 0, at most 1000000 \
                 handle times, got 200000000",
            ),
            (
                "negative arrivals",
                agents_required(-1.0, 180.0, 300.0, target, 1.0),
                "arrival rate must be a finite number, 0 or more, got -1",
            ),
            (
                "load past the cap",
                agents_required(1e6, 1e6, 300.0, target, 1.0),
                "an offered load of 1000000000000 Erlangs is past the 1000000 Erlangs this \
                 model computes",
            ),
        ];
        for (name, result, message) in cases {
            match result {
                Err(error) => assert_eq!(error.to_string(), message, "{name}"),
                Ok(agents) => panic!("{name}: accepted with {agents} agents"),
            }
        }
        assert!(ErlangA::new(f64::NAN, 180.0, 300.0).is_err());
        assert!(ErlangA::new(1.0, 0.0, 300.0).is_err());
    }

    #[test]
    fn quadrature_is_exact_where_it_must_be() {
        let cases: [(&str, f64, f64); 4] = [
            (
                "a polynomial of degree 20",
                integrate(|x| x.powi(20), &[0.0, 1.0]),
                1.0 / 21.0,
            ),
            (
                "an exponential",
                integrate(|x| (-x).exp(), &[0.0, 50.0]),
                1.0 - (-50f64).exp(),
            ),
            (
                "a narrow peak with a breakpoint",
                integrate(|x| (-(x * 1e4).powi(2)).exp(), &[-1e-3, 0.0, 1e-3]),
                std::f64::consts::PI.sqrt() * 1e-4,
            ),
            ("an empty interval", integrate(|x| x, &[2.0, 2.0]), 0.0),
        ];
        for (name, got, exact) in cases {
            assert!(
                (got - exact).abs() <= 1e-11 * exact.abs().max(1e-300),
                "{name}: {got} vs {exact}"
            );
        }
    }

    proptest! {
        #[test]
        fn figures_are_in_range_and_service_level_rises_with_agents(
            load in 0.01f64..300.0,
            agents in 0u32..400,
            handle in 10.0f64..3600.0,
            patience in 1.0f64..7200.0,
            wait in 0.0f64..600.0,
        ) {
            let model = ErlangA::new(load, handle, patience).unwrap();
            let staffed = model.at(agents);
            let next = model.at(agents + 1);
            for p in [
                staffed.probability_of_waiting(),
                staffed.probability_of_abandoning(),
                staffed.service_level(wait),
                staffed.occupancy(),
            ] {
                prop_assert!((0.0..=1.0).contains(&p), "{staffed:?}");
            }
            prop_assert!(staffed.mean_wait().is_finite());
            prop_assert!(staffed.mean_wait() <= patience * (1.0 + 1e-9), "{staffed:?}");
            prop_assert!(next.service_level(wait) + 1e-9 >= staffed.service_level(wait));
            prop_assert!(
                next.probability_of_abandoning() <= staffed.probability_of_abandoning() + 1e-9
            );
            // Answered within T is at most answered at all.
            prop_assert!(
                staffed.service_level(wait) <= 1.0 - staffed.probability_of_abandoning() + 1e-9
            );
        }
    }
}
