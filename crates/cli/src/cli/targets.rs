//! `--targets` and `%targets`: which engines a command runs on, written as in Python.
//!
//! - `all` (the default): every engine;
//! - engine ids and inclusive id ranges: `0,2`, `1-3`, `0,2-3`;
//! - Python indexing of the sorted list of engine ids (as ipyparallel's `rc[...]`): `-1` (the
//!   last engine), `::2` (every other engine), `1:3`, `:-1`, `::-1`; mixed with the above in a
//!   comma-separated list (`0,-1`).
//!
//! Ids and ranges need nothing but the text; indexes and slices are resolved against the
//! engines the controller has registered when the command runs ([`TargetSpec::resolve`]).

use std::fmt;

use mpx_client::{Client, ClientError, EngineId, Targets};

/// One item of a target list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    /// An engine id.
    Id(EngineId),
    /// Engine ids `a..=b`.
    Range(EngineId, EngineId),
    /// A negative index into the sorted ids (`-1`: the last).
    Index(i64),
    /// A Python slice `start:stop:step` of the sorted ids.
    Slice(Option<i64>, Option<i64>, Option<i64>),
}

/// Parsed `--targets` text: every engine, or a list of ids, ranges, indexes and slices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// The text as given (for messages).
    text: String,
    /// `None`: all engines.
    items: Option<Vec<Item>>,
}

impl Default for TargetSpec {
    fn default() -> Self {
        TargetSpec { text: "all".into(), items: None }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The help shown for `--targets` and `%targets`.
pub const SYNTAX: &str =
    "all, ids 0,2, ranges 1-3, or Python indexes and slices of the engines: -1, ::2, 1:3";

/// Why a target list was refused: when it is parsed (clap's `--targets`, `%targets`), or when
/// it is resolved against the registered engines ([`TargetSpec::select`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The list is empty (it is not "all").
    #[error("empty target list: give {SYNTAX}")]
    Empty,
    /// An item is none of the forms of [`SYNTAX`].
    #[error("bad target {item:?}: expected {SYNTAX}")]
    Bad {
        /// The item as given.
        item: String,
    },
    /// A slice with a step of zero.
    #[error("bad target {item:?}: a slice step cannot be zero")]
    ZeroStep {
        /// The item as given.
        item: String,
    },
    /// A range whose start is after its end.
    #[error("bad target {item:?}: the range is empty ({start} > {end})")]
    EmptyRange {
        /// The item as given.
        item: String,
        /// Its first id.
        start: EngineId,
        /// Its last id.
        end: EngineId,
    },
    /// A negative index past the first engine.
    #[error("target {index} is out of range: there are {engines} engines")]
    OutOfRange {
        /// The index (negative).
        index: i64,
        /// How many engines are registered.
        engines: usize,
    },
    /// The list names no engine.
    #[error("targets {targets} select no engine (engine ids: {ids})")]
    NoEngine {
        /// The list as given.
        targets: String,
        /// The registered ids, compactly ([`compact`]).
        ids: String,
    },
}

/// Parses `--targets` text (see the module doc); an empty text is an error.
///
/// # Errors
/// [`TargetError::Empty`], or the first item that is not a target.
pub fn parse_targets(text: &str) -> Result<TargetSpec, TargetError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(TargetError::Empty);
    }
    if trimmed == "all" {
        return Ok(TargetSpec::default());
    }
    let items = trimmed.split(',').map(|p| parse_item(p.trim())).collect::<Result<Vec<_>, _>>()?;
    Ok(TargetSpec { text: trimmed.to_string(), items: Some(items) })
}

fn parse_item(part: &str) -> Result<Item, TargetError> {
    let bad = || TargetError::Bad { item: part.to_string() };
    if part.is_empty() {
        return Err(bad());
    }
    if part.contains(':') {
        let fields: Vec<&str> = part.split(':').collect();
        if fields.len() > 3 {
            return Err(bad());
        }
        let num = |i: usize| -> Result<Option<i64>, TargetError> {
            match fields.get(i).map(|f| f.trim()) {
                None | Some("") => Ok(None),
                Some(f) => f.parse().map(Some).map_err(|_| bad()),
            }
        };
        let step = num(2)?;
        if step == Some(0) {
            return Err(TargetError::ZeroStep { item: part.to_string() });
        }
        return Ok(Item::Slice(num(0)?, num(1)?, step));
    }
    if let Some(rest) = part.strip_prefix('-') {
        let n: i64 = rest.parse().map_err(|_| bad())?;
        return if n == 0 { Ok(Item::Id(EngineId(0))) } else { Ok(Item::Index(-n)) };
    }
    if let Some((a, b)) = part.split_once('-') {
        let (a, b): (EngineId, EngineId) =
            (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
        if a > b {
            return Err(TargetError::EmptyRange { item: part.to_string(), start: a, end: b });
        }
        return Ok(Item::Range(a, b));
    }
    part.parse().map(Item::Id).map_err(|_| bad())
}

impl TargetSpec {
    /// Whether this needs the list of engines to be resolved (indexes or slices).
    fn needs_ids(&self) -> bool {
        self.items.iter().flatten().any(|i| matches!(i, Item::Index(_) | Item::Slice(..)))
    }

    /// The engines these targets name, given the registered engine ids.
    ///
    /// # Errors
    /// An index out of range, or a list that selects no engine.
    pub fn select(&self, ids: &[EngineId]) -> Result<Targets, TargetError> {
        let Some(items) = &self.items else {
            return Ok(Targets::All);
        };
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        let mut out: Vec<EngineId> = Vec::new();
        for item in items {
            match *item {
                Item::Id(id) => out.push(id),
                Item::Range(a, b) => out.extend((a.0..=b.0).map(EngineId)),
                Item::Index(i) => {
                    let at = ids.len() as i64 + i;
                    let id = usize::try_from(at)
                        .ok()
                        .and_then(|at| ids.get(at))
                        .ok_or(TargetError::OutOfRange { index: i, engines: ids.len() })?;
                    out.push(*id);
                }
                Item::Slice(start, stop, step) => out.extend(slice(&ids, start, stop, step)),
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|id| seen.insert(*id));
        if out.is_empty() {
            return Err(TargetError::NoEngine { targets: self.text.clone(), ids: compact(&ids) });
        }
        Ok(Targets::List(out))
    }

    /// The engines these targets name on `client`'s cluster (asks the controller only for
    /// indexes and slices).
    ///
    /// # Errors
    /// As [`select`](Self::select), or a failed request.
    pub fn resolve(&self, client: &Client) -> anyhow::Result<Targets> {
        if !self.needs_ids() {
            return Ok(self.select(&[])?);
        }
        let ids = client.ids().map_err(|e: ClientError| anyhow::anyhow!(e))?;
        Ok(self.select(&ids)?)
    }
}

/// Python's `ids[start:stop:step]`.
fn slice(ids: &[EngineId], start: Option<i64>, stop: Option<i64>, step: Option<i64>) -> Vec<EngineId> {
    let len = ids.len() as i64;
    let step = step.unwrap_or(1);
    // Python's slice.indices(): negative bounds count from the end, then clamp.
    let clamp = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
    let norm = |v: i64| if v < 0 { v + len } else { v };
    let mut out = Vec::new();
    if step > 0 {
        let mut i = start.map_or(0, |s| clamp(norm(s), 0, len));
        let end = stop.map_or(len, |s| clamp(norm(s), 0, len));
        while i < end {
            out.push(ids[i as usize]);
            i += step;
        }
    } else {
        let mut i = start.map_or(len - 1, |s| clamp(norm(s), -1, len - 1));
        let end = stop.map_or(-1, |s| clamp(norm(s), -1, len - 1));
        while i > end {
            out.push(ids[i as usize]);
            i += step;
        }
    }
    out
}

/// Ids as `0-3,5`.
pub fn compact(ids: &[EngineId]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1].0 == ids[j].0 + 1 {
            j += 1;
        }
        parts.push(if j > i + 1 {
            format!("{}-{}", ids[i], ids[j])
        } else if j == i + 1 {
            format!("{},{}", ids[i], ids[j])
        } else {
            ids[i].to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Targets as shown to people: `all` or `0,2-3`.
pub fn describe(targets: &Targets) -> String {
    match targets {
        Targets::All => "all".into(),
        Targets::List(ids) => compact(ids),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(text: &str, n: u32) -> Result<Vec<u32>, TargetError> {
        let ids: Vec<EngineId> = (0..n).map(EngineId).collect();
        let chosen = match parse_targets(text)?.select(&ids)? {
            Targets::All => ids,
            Targets::List(l) => l,
        };
        Ok(chosen.into_iter().map(EngineId::get).collect())
    }

    #[test]
    fn ids_ranges_and_all() {
        assert_eq!(sel("all", 4).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(sel("0,2", 4).unwrap(), vec![0, 2]);
        assert_eq!(sel("1-3", 4).unwrap(), vec![1, 2, 3]);
        assert_eq!(sel(" 0, 2-3 ", 4).unwrap(), vec![0, 2, 3]);
        assert!(!parse_targets("0,2").unwrap().needs_ids());
    }

    #[test]
    fn python_indexes_and_slices() {
        assert_eq!(sel("-1", 4).unwrap(), vec![3]);
        assert_eq!(sel("::2", 4).unwrap(), vec![0, 2]);
        assert_eq!(sel("1::2", 4).unwrap(), vec![1, 3]);
        assert_eq!(sel("1:3", 4).unwrap(), vec![1, 2]);
        assert_eq!(sel(":-1", 4).unwrap(), vec![0, 1, 2]);
        assert_eq!(sel("::-1", 4).unwrap(), vec![3, 2, 1, 0]);
        assert_eq!(sel("-2:", 4).unwrap(), vec![2, 3]);
        assert_eq!(sel("0,-1", 4).unwrap(), vec![0, 3]);
        assert_eq!(sel("1:100", 3).unwrap(), vec![1, 2]);
        // Slices index the sorted ids, not the ids themselves.
        let spec = parse_targets("1:").unwrap();
        assert_eq!(spec.select(&[EngineId(7), EngineId(4), EngineId(9)]).unwrap(), Targets::ids([7, 9]));
    }

    #[test]
    fn bad_and_empty_lists_are_errors() {
        for bad in ["", "  ", "x", "1-", "3-1", "::0", "1:2:3:4", "0,,1", "-x"] {
            assert!(parse_targets(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(parse_targets("").unwrap_err(), TargetError::Empty);
        assert!(sel("-5", 4).unwrap_err().to_string().contains("out of range"));
        assert!(sel("3:1", 4).unwrap_err().to_string().contains("select no engine"));
    }

    #[test]
    fn refusals_read_as_they_did() {
        let says = |text: &str, n: u32| sel(text, n).unwrap_err().to_string();
        assert_eq!(says("", 4), format!("empty target list: give {SYNTAX}"));
        assert_eq!(says("x", 4), format!("bad target \"x\": expected {SYNTAX}"));
        assert_eq!(says("::0", 4), "bad target \"::0\": a slice step cannot be zero");
        assert_eq!(says("3-1", 4), "bad target \"3-1\": the range is empty (3 > 1)");
        assert_eq!(says("-5", 4), "target -5 is out of range: there are 4 engines");
        assert_eq!(says("3:1", 4), "targets 3:1 select no engine (engine ids: 0-3)");
    }

    #[test]
    fn lists_are_shown_compactly() {
        assert_eq!(compact(&[0, 1, 2, 3, 5, 7, 8].map(EngineId)), "0-3,5,7,8");
        assert_eq!(describe(&Targets::ids([0, 2])), "0,2");
        assert_eq!(describe(&Targets::All), "all");
    }
}
