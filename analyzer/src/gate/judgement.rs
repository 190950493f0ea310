//! The judgement itself: [`evaluate`] runs the steps of the parent's docs
//! for each process (selection, leaks, suppressions, baseline, rules).
//! Uses [`super::verdict`], [`super::rules`], [`super::suppress`], the
//! parent's stack helpers and `crate::report`.

use std::collections::HashMap;

use super::rules::Rules;
use super::suppress::Suppression;
use super::verdict::{Failure, Gate, Leak, ProcessVerdict, Skip, Status, Usage, Verdict};
use super::{file_name, merged, program_name, site_key, where_};
use crate::analysis::reach::Kind;
use crate::kinds::ByKind;
use crate::report::{Ended, Report, Site};

/// Judges the processes of one run (see the module docs).
pub fn evaluate<'a>(reports: &'a [Report], gate: &Gate<'a>) -> Verdict<'a> {
    let suppressions: Vec<&Suppression> = gate
        .suppressions
        .iter()
        .flat_map(|f| f.entries.iter())
        .collect();
    let (max_bytes, max_blocks) = gate.rules.leak_limits();
    let mut e = Evaluation {
        gate: *gate,
        usage: vec![Usage::default(); suppressions.len()],
        suppressions,
        allowance: allowances(gate),
        max_bytes,
        max_blocks,
    };
    let mut processes = Vec::with_capacity(reports.len());
    for r in reports {
        processes.push(e.process(r));
    }
    let lineage: Vec<crate::analysis::lineage::Proc> =
        reports.iter().map(|r| r.process.lineage.clone()).collect();
    Verdict {
        processes,
        untraced: crate::analysis::lineage::untraced(&lineage),
        suppressions: e.suppressions,
        usage: e.usage,
        rules: gate.rules.clone(),
        baseline: gate.baseline,
    }
}

/// Allowances left per stack key: the baseline's leaks, each grown by the
/// tolerance.
fn allowances<'a>(gate: &Gate<'a>) -> HashMap<&'a str, (u64, u64)> {
    gate.baseline
        .map(|b| {
            b.stacks
                .iter()
                .map(|(k, &(bytes, count))| {
                    let bytes = bytes.saturating_add(gate.rules.tolerance.allowance(bytes));
                    (k.as_str(), (bytes, count))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The state of one [`evaluate`]: what is carried from process to process.
struct Evaluation<'a> {
    gate: Gate<'a>,
    /// Every suppression, in matching order.
    suppressions: Vec<&'a Suppression>,
    /// Parallel to `suppressions`.
    usage: Vec<Usage>,
    /// Allowances left per stack key.
    allowance: HashMap<&'a str, (u64, u64)>,
    max_bytes: Option<u64>,
    max_blocks: Option<u64>,
}

/// The note of a process whose heap leaks were not classified.
const UNCLASSIFIED: &str = "its heap leaks were not classified by reachability (the log of \
     `memtrace run --no-reachability` or of a plain LD_PRELOAD run, or the scan failed): every \
     unfreed block counts, whatever --leak-kinds says";

impl<'a> Evaluation<'a> {
    /// The judgement of one process: its leaks, what suppresses them, what
    /// the baseline allows of them, and the rules they break.
    fn process(&mut self, r: &'a Report) -> ProcessVerdict<'a> {
        let gate = self.gate;
        let mut v = ProcessVerdict {
            report: r,
            skipped: skip(r, gate.select),
            leaks: Vec::new(),
            counted_bytes: 0,
            counted_blocks: 0,
            not_counted: [(0, 0); 4],
            baseline_peak: gate
                .baseline
                .and_then(|b| b.peaks.get(&program_name(&r.process.exe)).copied()),
            failures: Vec::new(),
            notes: Vec::new(),
        };
        if v.skipped.is_some() {
            return v;
        }
        let mut leaks = self.heap_leaks(r, &mut v);
        if gate.rules.mmap_leaks {
            self.mmap_leaks(r, &mut leaks);
        }
        self.byte_limits(&mut v, &mut leaks);
        self.count(&mut v, &mut leaks);
        leaks.sort_by(|a, b| {
            (b.new_bytes, b.site.bytes)
                .cmp(&(a.new_bytes, a.site.bytes))
                .then(a.kind.cmp(b.kind))
        });
        v.leaks = leaks;
        judge(&mut v, gate.rules, self.max_bytes, self.max_blocks);
        v
    }

    /// The first suppression that applies to `kind` and matches the stack;
    /// `stack_matches` keeps which suppressions match it, computed when
    /// first needed.
    fn first(
        &self,
        s: &Site,
        stack_matches: &mut [Option<bool>],
        kind: Option<Kind>,
    ) -> Option<usize> {
        let suppressions = &self.suppressions;
        (0..suppressions.len()).find(|&i| {
            suppressions[i].covers(kind)
                && *stack_matches[i]
                    .get_or_insert_with(|| suppressions[i].matches(&s.stack, s.func))
        })
    }

    /// The heap leaks of a process, with their status, and the notes on
    /// those that were not classified.
    fn heap_leaks(&self, r: &Report, v: &mut ProcessVerdict) -> Vec<Leak> {
        let counted_kinds = self.gate.rules.counted_kinds();
        let mut leaks: Vec<Leak> = Vec::new();
        // Suppressions whose stack matched leaks that were not classified,
        // but whose kinds do not cover every kind: bytes, blocks.
        let mut unchecked: HashMap<usize, (u64, u64)> = HashMap::new();
        let mut unclassified = false;
        for s in merged(&r.heap_leaks) {
            // Which suppressions match the stack, computed when first needed.
            // A program's own suppressions do not apply to other programs.
            let mut stack_matches: Vec<Option<bool>> = self
                .suppressions
                .iter()
                .map(|x| (!x.applies_to(&r.process.exe)).then_some(false))
                .collect();
            let kinds = s.kinds;
            match kinds {
                None => {
                    unclassified = true;
                    leaks.push(self.unclassified_leak(s, &mut stack_matches, &mut unchecked));
                }
                Some(k) => self.classified_leaks(
                    s,
                    k,
                    &mut stack_matches,
                    counted_kinds,
                    &mut v.not_counted,
                    &mut leaks,
                ),
            }
        }
        if unclassified {
            v.notes.push(UNCLASSIFIED.into());
        }
        self.unchecked_notes(unchecked, &mut v.notes);
        leaks
    }

    /// A heap leak that was not classified: suppressed whole, only by a
    /// suppression for every kind; one for some kinds that matches its
    /// stack is noted in `unchecked`.
    fn unclassified_leak(
        &self,
        s: Site,
        stack_matches: &mut [Option<bool>],
        unchecked: &mut HashMap<usize, (u64, u64)>,
    ) -> Leak {
        let status = self
            .first(&s, stack_matches, None)
            .map_or(Status::Counted, Status::Suppressed);
        if status == Status::Counted
            && let Some(i) = (0..self.suppressions.len()).position(|i| {
                stack_matches[i] != Some(false) && self.suppressions[i].matches(&s.stack, s.func)
            })
        {
            let e = unchecked.entry(i).or_default();
            e.0 = e.0.saturating_add(s.bytes);
            e.1 = e.1.saturating_add(s.count);
        }
        Leak {
            kind: "heap",
            site: s,
            status,
            new_bytes: 0,
            new_count: 0,
        }
    }

    /// A classified heap leak: each kind's blocks go to the first
    /// suppression for that kind, one [`Leak`] per status; the kinds that do
    /// not count go to `not_counted`.
    fn classified_leaks(
        &self,
        s: Site,
        k: ByKind,
        stack_matches: &mut [Option<bool>],
        counted_kinds: &[Kind],
        not_counted: &mut ByKind,
        leaks: &mut Vec<Leak>,
    ) {
        // Each kind's blocks go to the first suppression for that kind.
        let mut parts: Vec<(Status, ByKind)> = Vec::new();
        for kind in Kind::ALL {
            let (b, n) = k[kind.index()];
            if b == 0 && n == 0 {
                continue;
            }
            if !counted_kinds.contains(&kind) {
                let e = &mut not_counted[kind.index()];
                e.0 = e.0.saturating_add(b);
                e.1 = e.1.saturating_add(n);
                continue;
            }
            let status = self
                .first(&s, stack_matches, Some(kind))
                .map_or(Status::Counted, Status::Suppressed);
            let i = match parts.iter().position(|p| p.0 == status) {
                Some(i) => i,
                None => {
                    parts.push((status, [(0, 0); 4]));
                    parts.len() - 1
                }
            };
            parts[i].1[kind.index()] = (b, n);
        }
        for (status, kinds) in parts {
            let (bytes, count) = kinds.iter().fold((0u64, 0u64), |(b, n), (kb, kn)| {
                (b.saturating_add(*kb), n.saturating_add(*kn))
            });
            leaks.push(Leak {
                kind: "heap",
                site: Site {
                    bytes,
                    count,
                    kinds: Some(kinds),
                    // The heuristics' blocks are the still reachable ones.
                    heuristics: if kinds[Kind::StillReachable.index()] == (0, 0) {
                        Default::default()
                    } else {
                        s.heuristics
                    },
                    ..s.clone()
                },
                status,
                new_bytes: 0,
                new_count: 0,
            });
        }
    }

    /// The notes on suppressions that matched the stacks of leaks that were
    /// not classified but apply to some kinds only, by suppression.
    fn unchecked_notes(&self, unchecked: HashMap<usize, (u64, u64)>, notes: &mut Vec<String>) {
        let mut unchecked: Vec<(usize, (u64, u64))> = unchecked.into_iter().collect();
        unchecked.sort_unstable();
        for (i, (bytes, count)) in unchecked {
            let supp = self.suppressions[i];
            notes.push(format!(
                "suppression {} ({}:{}) matches the stacks of {} in {} that were not \
                 classified by reachability, but applies only to {} blocks \
                 (match-leak-kinds: {}): they count",
                supp.name,
                supp.file.display(),
                supp.line,
                crate::units::plural(bytes, "byte", "bytes"),
                crate::units::plural(count, "block", "blocks"),
                Kind::phrase(supp.kinds(), "or"),
                supp.leak_kinds().join(",")
            ));
        }
    }

    /// The mmap leaks of a process, each to the first suppression that
    /// matches its stack.
    fn mmap_leaks(&self, r: &Report, leaks: &mut Vec<Leak>) {
        for site in merged(&r.mmap_leaks) {
            let status = self
                .suppressions
                .iter()
                .position(|s| s.applies_to(&r.process.exe) && s.matches(&site.stack, None))
                .map_or(Status::Counted, Status::Suppressed);
            leaks.push(Leak {
                kind: "mmap",
                site,
                status,
                new_bytes: 0,
                new_count: 0,
            });
        }
    }

    /// Byte limits of suppressions, within this process: one that matched
    /// more suppresses nothing here.
    fn byte_limits(&mut self, v: &mut ProcessVerdict, leaks: &mut [Leak]) {
        let suppressions = &self.suppressions;
        let mut matched: HashMap<usize, u64> = HashMap::new();
        for l in leaks.iter() {
            if let Status::Suppressed(i) = l.status {
                *matched.entry(i).or_default() += l.site.bytes;
            }
        }
        for (&i, &bytes) in &matched {
            if let Some(limit) = suppressions[i].limit
                && bytes > limit
            {
                self.usage[i].over_limit += 1;
                v.notes.push(format!(
                    "suppression {} ({}:{}) matched {} bytes, over its max of {}: those leaks count",
                    suppressions[i].name,
                    suppressions[i].file.display(),
                    suppressions[i].line,
                    crate::units::thousands(bytes),
                    crate::units::thousands(limit)
                ));
                for l in leaks.iter_mut() {
                    if l.status == Status::Suppressed(i) {
                        l.status = Status::Counted;
                    }
                }
            }
        }
    }

    /// What each leak counts for: suppressed ones count in their
    /// suppression's usage, the others draw from the baseline's allowance
    /// for their stack and count what exceeds it.
    fn count(&mut self, v: &mut ProcessVerdict, leaks: &mut [Leak]) {
        for l in leaks.iter_mut() {
            match l.status {
                Status::Suppressed(i) => {
                    let u = &mut self.usage[i];
                    u.stacks += 1;
                    u.blocks = u.blocks.saturating_add(l.site.count);
                    u.bytes = u.bytes.saturating_add(l.site.bytes);
                }
                Status::Counted => {
                    let (mut bytes, mut count) = (l.site.bytes, l.site.count);
                    if self.gate.baseline.is_some()
                        && let Some(left) =
                            self.allowance.get_mut(site_key(l.kind, &l.site).as_str())
                    {
                        let take = bytes.min(left.0);
                        left.0 -= take;
                        bytes -= take;
                        let take = count.min(left.1);
                        left.1 -= take;
                        count -= take;
                        if bytes == 0 {
                            l.status = Status::Baseline;
                            count = 0;
                        }
                    }
                    l.new_bytes = bytes;
                    l.new_count = count;
                    v.counted_bytes = v.counted_bytes.saturating_add(bytes);
                    v.counted_blocks = v.counted_blocks.saturating_add(count);
                }
                Status::Baseline => {}
            }
        }
    }
}

fn skip(r: &Report, select: &[String]) -> Option<Skip> {
    if !select.is_empty() {
        let exe = r.process.exe.as_str();
        let hit = select.iter().any(|g| {
            crate::gate::suppress::glob(g, exe) || crate::gate::suppress::glob(g, file_name(exe))
        });
        if !hit {
            return Some(Skip::NotSelected);
        }
    }
    if r.summary.malloc_not_interposed {
        return Some(Skip::NotTraced);
    }
    match r.process.ended {
        Ended::Exec => Some(Skip::Exec),
        Ended::Abnormal | Ended::Snapshot | Ended::Running => Some(Skip::Abnormal),
        Ended::Exit | Ended::UnderscoreExit => None,
    }
}

fn judge(v: &mut ProcessVerdict, rules: &Rules, max_bytes: Option<u64>, max_blocks: Option<u64>) {
    use crate::units::thousands as t;
    let base = if v.baseline_peak.is_some() || v.leaks.iter().any(|l| l.status == Status::Baseline)
    {
        " beyond the baseline"
    } else {
        ""
    };
    if let Some(max) = max_bytes
        && v.counted_bytes > max
    {
        v.failures.push(Failure {
            rule: "max-leaked-bytes",
            message: format!(
                "{} bytes in {} {} leaked{base} (max {})",
                t(v.counted_bytes),
                t(v.counted_blocks),
                blocks(v.counted_blocks),
                t(max)
            ),
        });
    }
    if let Some(max) = max_blocks
        && v.counted_blocks > max
    {
        v.failures.push(Failure {
            rule: "max-leaked-blocks",
            message: format!(
                "{} {} leaked{base} (max {})",
                t(v.counted_blocks),
                blocks(v.counted_blocks),
                t(max)
            ),
        });
    }
    let counted = || v.leaks.iter().filter(|l| l.status == Status::Counted);
    if let Some(max) = rules.max_stack_leaked_bytes {
        let over: Vec<&Leak> = counted().filter(|l| l.new_bytes > max).collect();
        if let Some(first) = over.first() {
            v.failures.push(Failure {
                rule: "max-stack-leaked-bytes",
                message: format!(
                    "{} stack(s) leaked more than {} bytes{base}, the largest {} bytes in {}",
                    over.len(),
                    t(max),
                    t(first.new_bytes),
                    where_(&first.site)
                ),
            });
        }
    }
    if let Some(max) = rules.max_stack_leaked_blocks {
        let over: Vec<&Leak> = counted().filter(|l| l.new_count > max).collect();
        if let Some(most) = over.iter().max_by_key(|l| l.new_count) {
            v.failures.push(Failure {
                rule: "max-stack-leaked-blocks",
                message: format!(
                    "{} stack(s) leaked more than {} blocks{base}, the most {} blocks in {}",
                    over.len(),
                    t(max),
                    t(most.new_count),
                    where_(&most.site)
                ),
            });
        }
    }
    let peak = v.report.summary.peak_heap_bytes;
    if let Some(max) = rules.max_peak
        && peak > max
    {
        v.failures.push(Failure {
            rule: "max-peak",
            message: format!("peak heap {} bytes (max {})", t(peak), t(max)),
        });
    }
    if let Some(old) = v.baseline_peak {
        let limit = old.saturating_add(rules.peak_tolerance.allowance(old));
        if peak > limit {
            v.failures.push(Failure {
                rule: "peak-tolerance",
                message: format!(
                    "peak heap grew from {} to {} bytes, over the baseline's tolerance of {}",
                    t(old),
                    t(peak),
                    rules.peak_tolerance
                ),
            });
        }
    }
}

/// "block" or "blocks", for `n` of them.
fn blocks(n: u64) -> &'static str {
    if n == 1 { "block" } else { "blocks" }
}
