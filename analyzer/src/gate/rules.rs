//! What fails the gate: the [`Rules`] (limits per process and per stack,
//! the leak kinds that count) and the [`Tolerance`] over a baseline. Uses
//! the shared vocabulary only.

use crate::analysis::reach::Kind;
use crate::units::parse_size;

/// What fails the gate. Limits apply to each judged process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    /// Most leaked bytes in one process.
    pub max_leaked_bytes: Option<u64>,
    /// Most leaked blocks (and regions, with `mmap_leaks`) in one process.
    pub max_leaked_blocks: Option<u64>,
    /// Most bytes leaked by any one stack.
    pub max_stack_leaked_bytes: Option<u64>,
    /// Most blocks leaked by any one stack.
    pub max_stack_leaked_blocks: Option<u64>,
    /// Mappings left at exit count as leaks too.
    pub mmap_leaks: bool,
    /// Highest allowed peak of live heap bytes.
    pub max_peak: Option<u64>,
    /// Growth over a baseline stack's leak that is still allowed.
    pub tolerance: Tolerance,
    /// Growth over the baseline's peak that is still allowed.
    pub peak_tolerance: Tolerance,
    /// The reachability kinds of a classified heap leak that count (see
    /// [`crate::analysis::reach`]); `None`: [`DEFAULT_LEAK_KINDS`]. A leak that was not
    /// classified counts whole.
    pub leak_kinds: Option<Vec<Kind>>,
}

/// The kinds that count by default: definitely and indirectly lost, as
/// valgrind's `--errors-for-leak-kinds` default. Still reachable blocks (a
/// global cache) and possibly lost ones do not fail the gate unless asked
/// (`--leak-kinds all`).
pub const DEFAULT_LEAK_KINDS: [Kind; 2] = [Kind::DefinitelyLost, Kind::IndirectlyLost];

impl Rules {
    /// The reachability kinds that count: [`Rules::leak_kinds`], else
    /// [`DEFAULT_LEAK_KINDS`].
    pub fn counted_kinds(&self) -> &[Kind] {
        self.leak_kinds.as_deref().unwrap_or(&DEFAULT_LEAK_KINDS)
    }

    /// The leak limits in force: with none set, no leaked byte is allowed.
    pub(super) fn leak_limits(&self) -> (Option<u64>, Option<u64>) {
        let none = self.max_leaked_bytes.is_none()
            && self.max_leaked_blocks.is_none()
            && self.max_stack_leaked_bytes.is_none()
            && self.max_stack_leaked_blocks.is_none();
        if none {
            (Some(0), None)
        } else {
            (self.max_leaked_bytes, self.max_leaked_blocks)
        }
    }
}

/// An allowance over a baseline figure: absolute bytes or a percentage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    Bytes(u64),
    Percent(f64),
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance::Bytes(0)
    }
}

impl Tolerance {
    /// Parses `10%`, `4096`, `4k`, `1m`.
    pub fn parse(s: &str) -> Result<Tolerance, String> {
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage (e.g. 10%)"))?;
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{s:?} is not a percentage (e.g. 10%)"));
            }
            return Ok(Tolerance::Percent(v));
        }
        parse_size(s).map(Tolerance::Bytes)
    }

    /// The allowed growth over `base`.
    pub fn allowance(self, base: u64) -> u64 {
        match self {
            Tolerance::Bytes(b) => b,
            Tolerance::Percent(p) => (base as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tolerance::Bytes(b) => write!(f, "{b} bytes"),
            Tolerance::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes and tolerances parse; a percentage scales the base.
    #[test]
    fn parse_sizes_and_tolerances() {
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size(" 2 MiB"), Ok(2 << 20));
        assert!(parse_size("1x").is_err() && parse_size("").is_err());
        assert_eq!(Tolerance::parse("10%"), Ok(Tolerance::Percent(10.0)));
        assert_eq!(Tolerance::parse("1k"), Ok(Tolerance::Bytes(1024)));
        assert!(Tolerance::parse("-5%").is_err());
        assert_eq!(Tolerance::Percent(10.0).allowance(1000), 100);
        assert_eq!(Tolerance::Bytes(7).allowance(1000), 7);
    }
}
