//! Leak kinds as memcheck names them, and memcheck's leak heuristics: the
//! vocabulary the reachability scan, the catalog, the report, the gate,
//! suppression files and every renderer share. Uses only `memtrace_format`.

/// memcheck's leak kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    DefinitelyLost,
    IndirectlyLost,
    PossiblyLost,
    StillReachable,
}

impl Kind {
    /// All kinds, in report order.
    pub const ALL: [Kind; 4] = [
        Kind::DefinitelyLost,
        Kind::IndirectlyLost,
        Kind::PossiblyLost,
        Kind::StillReachable,
    ];

    /// The code in a REACH record (`memtrace_format::kernel::REACH_*`).
    pub fn code(self) -> u64 {
        use memtrace_format::kernel::*;
        match self {
            Kind::DefinitelyLost => REACH_DEFINITE,
            Kind::IndirectlyLost => REACH_INDIRECT,
            Kind::PossiblyLost => REACH_POSSIBLE,
            Kind::StillReachable => REACH_REACHABLE,
        }
    }

    /// The kind of a REACH record's code.
    pub fn from_code(c: u64) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == c)
    }

    /// valgrind's words for it.
    pub fn words(self) -> &'static str {
        match self {
            Kind::DefinitelyLost => "definitely lost",
            Kind::IndirectlyLost => "indirectly lost",
            Kind::PossiblyLost => "possibly lost",
            Kind::StillReachable => "still reachable",
        }
    }

    /// The name in the JSON report and in valgrind's `match-leak-kinds`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DefinitelyLost => "definite",
            Kind::IndirectlyLost => "indirect",
            Kind::PossiblyLost => "possible",
            Kind::StillReachable => "reachable",
        }
    }

    /// Its index in [`Kind::ALL`] (and in a [`ByKind`] array).
    pub fn index(self) -> usize {
        self as usize
    }

    /// A set of kinds as valgrind writes it (`--errors-for-leak-kinds`,
    /// `match-leak-kinds:`): `definite`, `indirect`, `possible`, `reachable`
    /// separated by commas, or `all`, or `none`. Returned in the order of
    /// [`Kind::ALL`], each once.
    pub fn parse_list(s: &str) -> Result<Vec<Kind>, String> {
        let mut set = [false; 4];
        for part in s.split(',').map(str::trim) {
            match part {
                "all" => set = [true; 4],
                "none" => {}
                p => match Kind::ALL.iter().find(|k| k.as_str() == p) {
                    Some(k) => set[k.index()] = true,
                    None => {
                        return Err(format!(
                            "unknown leak kind {p:?} (expected definite, indirect, possible, \
                             reachable, all or none, separated by commas)"
                        ));
                    }
                },
            }
        }
        Ok(Kind::ALL.into_iter().filter(|k| set[k.index()]).collect())
    }

    /// A set of kinds in words, joined by `conj` (`and`, `or`), the lost
    /// ones sharing their word: `definitely and indirectly lost`,
    /// `definitely lost or still reachable`, `definitely, possibly lost and
    /// still reachable`; `no` for none.
    pub fn phrase(kinds: &[Kind], conj: &str) -> String {
        let has = |k: Kind| kinds.contains(&k);
        let lost: Vec<&str> = [
            (Kind::DefinitelyLost, "definitely"),
            (Kind::IndirectlyLost, "indirectly"),
            (Kind::PossiblyLost, "possibly"),
        ]
        .into_iter()
        .filter(|(k, _)| has(*k))
        .map(|(_, w)| w)
        .collect();
        let mut parts: Vec<String> = Vec::new();
        if !lost.is_empty() {
            // With "still reachable" after it, the conjunction goes there.
            let adverbs = if has(Kind::StillReachable) {
                lost.join(", ")
            } else {
                join_words(&lost, conj)
            };
            parts.push(format!("{adverbs} lost"));
        }
        if has(Kind::StillReachable) {
            parts.push("still reachable".into());
        }
        if parts.is_empty() {
            return "no".into();
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        join_words(&parts, conj)
    }
}

/// One of memcheck's leak heuristics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Heuristic {
    StdString,
    Length64,
    NewArray,
    MultipleInheritance,
}

impl Heuristic {
    /// All of them, in memcheck's order (the order they are tried in).
    pub const ALL: [Heuristic; 4] = [
        Heuristic::StdString,
        Heuristic::Length64,
        Heuristic::NewArray,
        Heuristic::MultipleInheritance,
    ];

    /// memcheck's name for it (`--leak-check-heuristics`, the JSON report).
    pub fn name(self) -> &'static str {
        match self {
            Heuristic::StdString => "stdstring",
            Heuristic::Length64 => "length64",
            Heuristic::NewArray => "newarray",
            Heuristic::MultipleInheritance => "multipleinheritance",
        }
    }

    /// Its index in [`Heuristic::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The code of a REACH record of the blocks still reachable through it
    /// (`memtrace_format::kernel::REACH_REACHABLE_*`).
    pub fn code(self) -> u64 {
        use memtrace_format::kernel::*;
        match self {
            Heuristic::StdString => REACH_REACHABLE_STDSTRING,
            Heuristic::Length64 => REACH_REACHABLE_LENGTH64,
            Heuristic::NewArray => REACH_REACHABLE_NEWARRAY,
            Heuristic::MultipleInheritance => REACH_REACHABLE_MULTIPLEINHERITANCE,
        }
    }

    /// The heuristic of a REACH record's code.
    pub fn from_code(c: u64) -> Option<Heuristic> {
        Heuristic::ALL.into_iter().find(|h| h.code() == c)
    }

    pub(crate) fn bit(self) -> u8 {
        1 << self.index()
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_words(words: &[&str], conj: &str) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} {conj} {last}", init.join(", ")),
    }
}

/// Bytes and blocks of each leak kind, indexed by [`Kind::index`]: the one
/// shape every consumer sums kinds in (the report, the gate, snapshots, the
/// renderers).
pub type ByKind = [(u64, u64); 4];

/// The part of a leak that counts when only `kinds` do: with its blocks
/// classified (`site_kinds`), the bytes and blocks of those kinds; else all
/// of `(bytes, count)`. `None` when nothing of it counts.
pub fn counted_part(
    bytes: u64,
    count: u64,
    site_kinds: Option<&ByKind>,
    kinds: &[Kind],
) -> Option<(u64, u64)> {
    let Some(k) = site_kinds else {
        return Some((bytes, count));
    };
    let (b, n) = kinds.iter().fold((0u64, 0u64), |(b, n), kind| {
        let (kb, kn) = k[kind.index()];
        (b.saturating_add(kb), n.saturating_add(kn))
    });
    (b > 0 || n > 0).then_some((b, n))
}
