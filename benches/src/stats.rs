//! Summaries of timing samples.

use serde::Serialize;

/// Median, min and max of samples in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Median (mean of the two middle samples for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples (for a sum of floors: the smaller count).
    pub n: usize,
}

impl Stats {
    /// The summary of `samples`; `None` if there are none.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        Some(Stats { median, min: s[0], max: s[n - 1], n })
    }

    /// The floor of two steps done one after the other: medians, mins and maxes add up.
    pub fn then(self, other: Stats) -> Stats {
        Stats {
            median: self.median + other.median,
            min: self.min + other.min,
            max: self.max + other.max,
            n: self.n.min(other.n),
        }
    }
}

/// A duration in seconds, in the unit that reads best (`12.3 µs`, `4.56 ms`, `1.23 s`).
pub fn fmt_secs(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).expect("samples");
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).expect("samples").median, 2.5);
        assert_eq!(Stats::of(&[]), None);
        let sum = s.then(Stats::of(&[1.0]).expect("one"));
        assert_eq!((sum.median, sum.min, sum.max, sum.n), (3.0, 2.0, 4.0, 1));
    }

    #[test]
    fn units() {
        assert_eq!(fmt_secs(12.34e-6), "12.3 µs");
        assert_eq!(fmt_secs(0.00456), "4.56 ms");
        assert_eq!(fmt_secs(1.234), "1.23 s");
    }
}
