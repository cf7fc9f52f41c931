//! Rounds: `mpx-bench --rounds N` measures the selected rows N times, in their order each time,
//! and reports each row once, over all its rounds.
//!
//! The VM is noisy over seconds to minutes, and some rows are compared with other rows of the
//! same run (`push80M.interp` with `push80M`, see [`crate::interp`]): one round of each, a few
//! seconds apart, can land one in a quiet minute and the other in a busy one. In rounds the
//! two alternate (`push80M`, `push80M.interp`, `push80M`, `push80M.interp`, ...), so drift of
//! the machine reaches both sides alike.
//!
//! A row over its rounds ([`merge`]): the median of the rounds' medians (each round's median is
//! already robust to its outliers; the rounds' samples are not kept), the smallest minimum, the
//! largest maximum, every sample counted. Processes left behind add up; a breakdown's parts are
//! the medians of the rounds'. A round that failed makes the row fail with its error.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::{rows::Measured, stats::Stats};

/// The median of `xs` (mean of the two middle values for an even count); `None` if empty.
fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.retain(|x| x.is_finite());
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// One summary of the summaries of several rounds (see the module's doc).
pub fn merge_stats(rounds: &[Stats]) -> Option<Stats> {
    Some(Stats {
        median: median(rounds.iter().map(|s| s.median).collect())?,
        min: rounds.iter().map(|s| s.min).fold(f64::INFINITY, f64::min),
        max: rounds.iter().map(|s| s.max).fold(f64::NEG_INFINITY, f64::max),
        n: rounds.iter().map(|s| s.n).sum(),
    })
}

/// The medians, per part, of the rounds' breakdowns.
fn merge_breakdowns(rounds: Vec<BTreeMap<String, f64>>) -> Option<BTreeMap<String, f64>> {
    let mut parts: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for b in rounds {
        for (k, v) in b {
            parts.entry(k).or_default().push(v);
        }
    }
    let merged: BTreeMap<String, f64> =
        parts.into_iter().filter_map(|(k, vs)| median(vs).map(|m| (k, m))).collect();
    (!merged.is_empty()).then_some(merged)
}

/// A row's measurement over its rounds (one round: that round's, unchanged).
///
/// # Errors
/// A round failed (its error), or there were no rounds.
pub fn merge(rounds: Vec<Result<Measured>>) -> Result<Measured> {
    let mut done = Vec::new();
    for round in rounds {
        done.push(round?);
    }
    if done.len() == 1 {
        return Ok(done.pop().expect("one round"));
    }
    let Some(first) = done.first().cloned() else {
        anyhow::bail!("no rounds measured");
    };
    Ok(match first {
        Measured::Done { .. } => {
            let (mut stats, mut leftovers, mut parts) = (Vec::new(), None::<usize>, Vec::new());
            let mut relays = Vec::new();
            for m in done {
                if let Measured::Done { stats: s, leftovers: l, breakdown, relay } = m {
                    stats.push(s);
                    relays.extend(relay);
                    leftovers = match (leftovers, l) {
                        (None, None) => None,
                        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
                    };
                    parts.extend(breakdown);
                }
            }
            Measured::Done {
                stats: merge_stats(&stats).ok_or_else(|| anyhow::anyhow!("no samples"))?,
                leftovers,
                breakdown: merge_breakdowns(parts),
                relay: merge_stats(&relays),
            }
        }
        Measured::Rate { per_sample, .. } => {
            let rates: Vec<Stats> = done
                .into_iter()
                .filter_map(|m| match m {
                    Measured::Rate { per_second, .. } => Some(per_second),
                    _ => None,
                })
                .collect();
            Measured::Rate {
                per_second: merge_stats(&rates).ok_or_else(|| anyhow::anyhow!("no samples"))?,
                per_sample,
            }
        }
        // Memory: the round with the largest peak (the bound is on the peak); pending and
        // not-implemented rows are the same in every round.
        Measured::Memory { .. } => done
            .into_iter()
            .max_by_key(|m| match m {
                Measured::Memory { peak_above_idle, .. } => *peak_above_idle,
                _ => 0,
            })
            .expect("rounds"),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(samples: &[f64], leftovers: Option<usize>, part: f64) -> Result<Measured> {
        let mut b = BTreeMap::new();
        b.insert("engine_run".to_string(), part);
        Ok(Measured::Done { stats: Stats::of(samples).unwrap(), leftovers, breakdown: Some(b), relay: None })
    }

    #[test]
    fn rounds_give_the_median_of_medians_and_the_extremes() {
        let m = merge(vec![
            done(&[1.0, 2.0, 9.0], None, 1.0),
            done(&[3.0, 4.0, 5.0], Some(1), 5.0),
            done(&[0.5, 6.0, 7.0], None, 3.0),
        ])
        .unwrap();
        let Measured::Done { stats, leftovers, breakdown, .. } = m else { panic!("not done: {m:?}") };
        assert_eq!((stats.median, stats.min, stats.max, stats.n), (4.0, 0.5, 9.0, 9));
        assert_eq!(leftovers, Some(1));
        assert_eq!(breakdown.unwrap()["engine_run"], 3.0);
    }

    #[test]
    fn one_round_is_unchanged_and_a_failed_round_fails_the_row() {
        let one = merge(vec![done(&[1.0, 2.0], None, 1.0)]).unwrap();
        let Measured::Done { stats, .. } = one else { panic!() };
        assert_eq!(stats.median, 1.5);
        let failed = merge(vec![done(&[1.0], None, 1.0), Err(anyhow::anyhow!("cell failed"))]);
        assert_eq!(failed.unwrap_err().to_string(), "cell failed");
    }

    #[test]
    fn rates_merge_like_times() {
        let rate = |r: &[f64]| Measured::rate(r, 10);
        let m = merge(vec![rate(&[10.0, 20.0, 30.0]), rate(&[40.0, 50.0, 60.0])]).unwrap();
        let Measured::Rate { per_second, per_sample } = m else { panic!() };
        assert_eq!((per_second.median, per_second.min, per_second.max, per_sample), (35.0, 10.0, 60.0, 10));
    }
}
