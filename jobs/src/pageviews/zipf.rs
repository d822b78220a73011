//! Zipf sampling in O(1) time and memory, and the counter-based random
//! numbers the generator draws from.

/// SplitMix64's finalizer: a bijection on `u64` that scrambles every bit.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A tiny random number generator (SplitMix64) whose stream is fixed for
/// a seed forever.
///
/// The generator needs event `i` to be a pure function of `(seed, i)`, so
/// every event seeds its own stream; rand's small generators promise neither
/// a stable stream across releases nor cheap random access.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::SplitMix64;
/// let mut a = SplitMix64::new(7);
/// let mut b = SplitMix64::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!((0.0..1.0).contains(&a.next_f64()));
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// A uniform double in `[0, 1)`.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A Zipf distribution over ranks `1..=n`: rank `k` has probability
/// proportional to `k^-exponent`.
///
/// Sampling is Hörmann and Derflinger's rejection-inversion (as in Apache
/// Commons RNG): a few floating-point operations per draw, no table, and
/// almost never more than one round.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::{SplitMix64, Zipf};
/// let zipf = Zipf::new(1_000_000, 1.0);
/// let mut rng = SplitMix64::new(1);
/// let ones = (0..10_000).filter(|_| zipf.sample(&mut rng) == 1).count();
/// // P(1) = 1 / H(1e6) ≈ 0.0695.
/// assert!((550..850).contains(&ones), "{ones}");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zipf {
    n: u64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    /// The distribution over `1..=n` with the given exponent.
    ///
    /// # Panics
    /// If `n` is 0 or the exponent is not a positive finite number
    /// (configs are validated before this is built).
    pub fn new(n: u64, exponent: f64) -> Self {
        assert!(n > 0, "Zipf over 0 ranks");
        assert!(
            exponent.is_finite() && exponent > 0.0,
            "Zipf exponent {exponent} must be positive and finite"
        );
        let mut z = Zipf {
            n,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(n as f64 + 0.5);
        z.s = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// The number of ranks.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Draws a rank in `1..=n`.
    #[inline]
    pub fn sample(&self, rng: &mut SplitMix64) -> u64 {
        loop {
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = ((x + 0.5) as u64).clamp(1, self.n);
            let kf = k as f64;
            if kf - x <= self.s || u >= self.h_integral(kf + 0.5) - self.h(kf) {
                return k;
            }
        }
    }

    /// `x^-exponent`.
    #[inline]
    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    /// An antiderivative of `h`: `(x^(1-e) - 1) / (1-e)`, or `ln x` for e=1.
    #[inline]
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    #[inline]
    fn h_integral_inverse(&self, x: f64) -> f64 {
        // Clamped for rounding errors near the lower end.
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1+x)/x`, continuous at 0.
#[inline]
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1)/x`, continuous at 0.
#[inline]
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frequencies(n: u64, exponent: f64, draws: usize) -> Vec<f64> {
        let zipf = Zipf::new(n, exponent);
        let mut rng = SplitMix64::new(99);
        let mut counts = vec![0u64; n as usize + 1];
        for _ in 0..draws {
            counts[zipf.sample(&mut rng) as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn matches_the_exact_distribution_on_small_n() {
        for exponent in [0.8, 1.0, 1.3] {
            let n = 20u64;
            let norm: f64 = (1..=n).map(|k| (k as f64).powf(-exponent)).sum();
            let freq = frequencies(n, exponent, 200_000);
            assert_eq!(freq[0], 0.0);
            for k in 1..=n {
                let p = (k as f64).powf(-exponent) / norm;
                assert!((freq[k as usize] - p).abs() < 0.005, "e={exponent} k={k}");
            }
        }
    }

    #[test]
    fn stays_in_range() {
        for n in [1u64, 2, 3, 6_000_000] {
            let zipf = Zipf::new(n, 1.0);
            let mut rng = SplitMix64::new(n);
            for _ in 0..10_000 {
                assert!((1..=n).contains(&zipf.sample(&mut rng)));
            }
        }
    }
}
