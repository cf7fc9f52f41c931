//! Collapsed output: what several engines printed identically is shown once, labelled with the
//! engines that printed it (`[stdout:0-3] 193.87`, `[stdout:0,2] r 0`, `[0-3:error] ...`).
//!
//! [`LiveOutput`] does it for output as it streams in: what arrived together (one batch) is
//! grouped by engine, and engines whose text is identical are shown once. The CLI and the
//! console (through [`crate::printer::CellPrinter`]) hold a request's output while it is quick
//! (the rule is in [`crate::output`]: it ends, or is seen running for [`FIRST_BATCH`]), so a
//! quick cell's output is collapsed whole and in engine order, and then show a batch every
//! [`BATCH`] while the cell runs.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    hash::Hash,
    time::{Duration, Instant},
};

use mpx_messages::{EngineId, StreamName};

/// How long a cell runs before its output streams: a cell that ends sooner is shown whole,
/// collapsed, in engine order ([`crate::output::WINDOW`]; the rule is in [`crate::output`]).
pub const FIRST_BATCH: Duration = Duration::from_millis(500);

/// How often output is shown while a cell runs, after the first batch.
pub const BATCH: Duration = Duration::from_millis(250);

/// How long a batch waits for every running engine to have a line to show (so that lines the
/// engines print at about the same time are collapsed), before it is shown anyway.
pub const MAX_HOLD: Duration = Duration::from_secs(2);

/// Engine ids as a compact list: `[0, 1, 2, 3, 5]` → `0-3,5`.
pub fn rank_list(ids: &[u32]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { ids[i].to_string() } else { format!("{}-{}", ids[i], ids[j]) });
        i = j + 1;
    }
    parts.join(",")
}

/// Groups `(engine, key)` pairs by equal key, in the order keys are first seen.
pub fn group<K: Eq + Hash + Clone>(
    items: impl IntoIterator<Item = (EngineId, K)>,
) -> Vec<(Vec<EngineId>, K)> {
    let mut order: Vec<(Vec<EngineId>, K)> = Vec::new();
    let mut index: HashMap<K, usize> = HashMap::new();
    for (id, key) in items {
        match index.get(&key) {
            Some(&i) => order[i].0.push(id),
            None => {
                index.insert(key.clone(), order.len());
                order.push((vec![id], key));
            }
        }
    }
    order
}

/// How a group of engines is labelled: by `labels` (e.g. `1:3` for set 1 rank 3) when every
/// engine has one and some label is not just the id, else as a compact id list.
pub fn who(ids: &[EngineId], labels: &HashMap<EngineId, String>) -> String {
    let named =
        ids.iter().all(|id| labels.contains_key(id)) && ids.iter().any(|id| labels[id] != id.to_string());
    if named {
        ids.iter().map(|id| labels[id].as_str()).collect::<Vec<_>>().join(",")
    } else {
        rank_list(&ids.iter().map(|id| id.get()).collect::<Vec<_>>())
    }
}

/// Writes `text` as `[stream:who] line` lines.
pub fn write_lines(out: &mut String, stream: StreamName, who: &str, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "[{stream}:{who}] {line}");
    }
}

/// Output streaming in from a running request's engines, shown in batches (see the module doc).
#[derive(Debug, Default)]
pub struct LiveOutput {
    collapse: bool,
    labels: HashMap<EngineId, String>,
    /// Text received and not shown yet, by stream and engine.
    pending: BTreeMap<(StreamName, EngineId), String>,
    /// Since when complete lines have been waiting.
    waiting: Option<Instant>,
}

impl LiveOutput {
    /// A printer that collapses identical output (unless `collapse` is false), labelling
    /// engines by `labels` where given.
    pub fn new(collapse: bool, labels: HashMap<EngineId, String>) -> Self {
        LiveOutput { collapse, labels, pending: BTreeMap::new(), waiting: None }
    }

    /// Adds text an engine wrote.
    pub fn add(&mut self, engine: EngineId, stream: StreamName, text: &str) {
        self.add_at(engine, stream, text, Instant::now());
    }

    /// [`add`](Self::add), received at `now`.
    pub(crate) fn add_at(&mut self, engine: EngineId, stream: StreamName, text: &str, now: Instant) {
        if text.contains('\n') && self.waiting.is_none() {
            self.waiting = Some(now);
        }
        self.pending.entry((stream, engine)).or_default().push_str(text);
    }

    /// Whether a batch should be shown now: complete lines are waiting, and every engine of
    /// `running` (those that have not answered yet) has one too, or they have waited
    /// [`MAX_HOLD`] (or collapsing is off).
    pub fn due(&self, running: &[EngineId]) -> bool {
        self.due_at(running, Instant::now())
    }

    /// [`due`](Self::due) at `now`.
    pub(crate) fn due_at(&self, running: &[EngineId], now: Instant) -> bool {
        let Some(since) = self.waiting else { return false };
        let has_line =
            |id: &EngineId| self.pending.iter().any(|((_, e), text)| e == id && text.contains('\n'));
        !self.collapse || now.saturating_duration_since(since) >= MAX_HOLD || running.iter().all(has_line)
    }

    /// The complete lines received so far, as text to show (a line not ended yet waits).
    pub fn batch(&mut self) -> String {
        self.render(false, Instant::now())
    }

    /// [`batch`](Self::batch) at `now`.
    pub(crate) fn batch_at(&mut self, now: Instant) -> String {
        self.render(false, now)
    }

    /// Everything received, unfinished lines included (the request ended).
    pub fn finish(&mut self) -> String {
        self.render(true, Instant::now())
    }

    fn render(&mut self, all: bool, now: Instant) -> String {
        let mut out = String::new();
        for stream in [StreamName::Stdout, StreamName::Stderr] {
            let mut ready: Vec<(EngineId, String)> = Vec::new();
            for ((s, id), text) in self.pending.iter_mut().filter(|((s, _), _)| *s == stream) {
                debug_assert_eq!(*s, stream);
                let cut = if all { text.len() } else { text.rfind('\n').map_or(0, |i| i + 1) };
                if cut > 0 {
                    ready.push((*id, text.drain(..cut).collect()));
                }
            }
            if self.collapse {
                for (ids, text) in group(ready) {
                    write_lines(&mut out, stream, &who(&ids, &self.labels), &text);
                }
            } else {
                for (id, text) in ready {
                    write_lines(&mut out, stream, &who(&[id], &self.labels), &text);
                }
            }
        }
        self.pending.retain(|_, text| !text.is_empty());
        self.waiting = None;
        if self.pending.values().any(|text| text.contains('\n')) {
            self.waiting = Some(now);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u32]) -> Vec<EngineId> {
        v.iter().map(|&i| EngineId::from(i)).collect()
    }

    #[test]
    fn rank_lists_are_compact() {
        assert_eq!(rank_list(&[0, 1, 2, 3]), "0-3");
        assert_eq!(rank_list(&[0, 2]), "0,2");
        assert_eq!(rank_list(&[5, 0, 1, 2, 3]), "0-3,5");
        assert_eq!(rank_list(&[0, 1]), "0-1");
        assert_eq!(rank_list(&[7]), "7");
        assert_eq!(rank_list(&[]), "");
    }

    #[test]
    fn labels_name_engines_of_several_sets() {
        let labels: HashMap<EngineId, String> =
            [(EngineId::from(0), "0:0".to_string()), (EngineId::from(2), "1:0".to_string())].into();
        assert_eq!(who(&ids(&[0, 2]), &labels), "0:0,1:0");
        assert_eq!(who(&ids(&[0, 1]), &HashMap::new()), "0-1");
        let plain: HashMap<EngineId, String> = (0..4).map(|i| (EngineId::from(i), i.to_string())).collect();
        assert_eq!(who(&ids(&[0, 1, 2, 3]), &plain), "0-3");
    }

    #[test]
    fn equal_output_is_shown_once_with_its_engines() {
        let mut live = LiveOutput::new(true, HashMap::new());
        for i in 0..4 {
            live.add(EngineId::from(i), StreamName::Stdout, "193.87\n");
        }
        assert_eq!(live.finish(), "[stdout:0-3] 193.87\n");
        for i in 0..4 {
            live.add(EngineId::from(i), StreamName::Stdout, &format!("r {}\n", i % 2));
        }
        assert_eq!(live.finish(), "[stdout:0,2] r 0\n[stdout:1,3] r 1\n");
    }

    #[test]
    fn different_output_is_shown_per_engine_and_without_collapse_always() {
        let mut live = LiveOutput::new(true, HashMap::new());
        for i in 0..3 {
            live.add(EngineId::from(i), StreamName::Stdout, &format!("rank {i}\nend\n"));
        }
        assert_eq!(
            live.finish(),
            "[stdout:0] rank 0\n[stdout:0] end\n[stdout:1] rank 1\n[stdout:1] end\n[stdout:2] rank 2\n[stdout:2] end\n"
        );
        let mut live = LiveOutput::new(false, HashMap::new());
        for i in 0..2 {
            live.add(EngineId::from(i), StreamName::Stdout, "same\n");
        }
        live.add(EngineId::from(1), StreamName::Stderr, "warn\n");
        assert_eq!(live.finish(), "[stdout:0] same\n[stdout:1] same\n[stderr:1] warn\n");
    }

    #[test]
    fn a_batch_is_due_when_every_running_engine_has_a_line() {
        let mut live = LiveOutput::new(true, HashMap::new());
        let running = ids(&[0, 1, 2]);
        assert!(!live.due(&running), "nothing to show");
        live.add(EngineId::from(0), StreamName::Stdout, "x\n");
        live.add(EngineId::from(1), StreamName::Stdout, "x\n");
        live.add(EngineId::from(2), StreamName::Stdout, "no end yet");
        assert!(!live.due(&running), "engine 2 has no line yet");
        assert!(live.due(&running[..2]), "engine 2 answered: it has nothing more");
        live.add(EngineId::from(2), StreamName::Stdout, "\n");
        assert!(live.due(&running));
        assert_eq!(live.batch(), "[stdout:0-1] x\n[stdout:2] no end yet\n");
        assert!(!live.due(&running));
        assert!(LiveOutput {
            waiting: Some(Instant::now() - MAX_HOLD),
            ..LiveOutput::new(true, HashMap::new())
        }
        .due(&running));
    }

    #[test]
    fn a_batch_waits_for_the_end_of_a_line() {
        let mut live = LiveOutput::new(true, HashMap::new());
        live.add(EngineId::from(0), StreamName::Stdout, "first\nsec");
        assert_eq!(live.batch(), "[stdout:0] first\n");
        assert_eq!(live.batch(), "");
        live.add(EngineId::from(0), StreamName::Stdout, "ond\nthi");
        assert_eq!(live.batch(), "[stdout:0] second\n");
        assert_eq!(live.finish(), "[stdout:0] thi\n");
        assert_eq!(live.finish(), "");
    }
}
