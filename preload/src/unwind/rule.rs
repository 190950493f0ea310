//! The packed rule word: how to unwind one frame, in one `u64`.
//!
//! A [`Rule`] is what the cache holds for an address; a [`StepRule`] is a
//! rule with the flags of one step of a walk in its free bits (what a
//! recorded step keeps). Both are read only through the accessors below, so
//! that no other code knows the layout:
//!
//! | bits   | field                                   | in |
//! |--------|-----------------------------------------|----|
//! | 0..2   | [`Kind`]                                | both |
//! | 2      | [`CFA_RBP`]: the CFA is computed from rbp, not rsp | both |
//! | 3      | [`RBP_SAVED`]: rbp is restored from a slot | both |
//! | 4      | [`STEP_EXACT`]: `pc` is exact           | step |
//! | 5      | [`STEP_HIDDEN`]: `pc` is in this library | step |
//! | 6      | [`STEP_LAST`]: the replay's end mark    | step, during a replay |
//! | 7      | unused                                  | |
//! | 8..32  | CFA offset from its base register (i24) | both |
//! | 32..48 | offset of rbp's slot from the CFA (i16) | both |
//! | 48..64 | module epoch, low 16 bits               | both |
//!
//! [`Kind::Normal`] is 0 and the step flags are 0 in the common step, so
//! the replay tells the common step by one `test` against [`FAST_MASK`].

use core::ops::Range;

/// Bits 0..2: the [`Kind`].
const KIND_MASK: u64 = 0b11;
/// Bit 2, in a rule and a step: the CFA is computed from rbp (else from rsp).
const CFA_RBP: u64 = 1 << 2;
/// Bit 3, in a rule and a step: rbp is restored from a slot at CFA + offset.
const RBP_SAVED: u64 = 1 << 3;
/// Bit 4, in a step only: `pc` is exact (the first frame, or interrupted by a signal), not a return address.
const STEP_EXACT: u64 = 1 << 4;
/// Bit 5, in a step only: `pc` lies in this library, so the step adds no frame.
const STEP_HIDDEN: u64 = 1 << 5;
/// Bit 6, in a step only and only while a replay runs: the last step it may take.
const STEP_LAST: u64 = 1 << 6;
/// The bits that are all 0 in the common step: [`Kind::Normal`], CFA from rsp, rbp not restored, a return address, a frame.
const FAST_MASK: u64 = KIND_MASK | CFA_RBP | RBP_SAVED | STEP_EXACT | STEP_HIDDEN;

/// Position and width of the CFA offset (a signed 24-bit field).
const CFA_OFF_SHIFT: u32 = 8;
const CFA_OFF_BITS: u32 = 24;
/// Position of rbp's slot offset (a signed 16-bit field, read through `i16`).
const RBP_OFF_SHIFT: u32 = 32;
const RBP_OFF_BITS: u32 = 16;
/// Position and width of the epoch (its low 16 bits).
const EPOCH_SHIFT: u32 = 48;
const EPOCH_MASK: u32 = 0xffff;

/// The values a signed field of `bits` bits holds.
const fn signed_range(bits: u32) -> Range<i64> {
    -(1 << (bits - 1))..(1 << (bits - 1))
}

/// A mask of the low `bits` bits.
const fn low_bits(bits: u32) -> u64 {
    (1 << bits) - 1
}

/// What a rule does with its frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    /// CFA = rsp or rbp + offset, return address at CFA - 8, rbp restored
    /// from CFA + offset or unchanged (0, so that the common step is told by
    /// one `test`).
    Normal,
    /// No rule the unwinder can evaluate (no CFI, or a rule it cannot
    /// express): the walk stops here, truncated.
    NoRule,
    /// A signal trampoline: the registers are in the kernel's `ucontext_t` at sp.
    Signal,
    /// The outermost frame (return address undefined): the walk ends, whole.
    End,
}

impl Kind {
    /// The kind's value in bits 0..2.
    const fn bits(self) -> u64 {
        match self {
            Kind::Normal => 0,
            Kind::NoRule => 1,
            Kind::Signal => 2,
            Kind::End => 3,
        }
    }

    /// The kind whose value is in bits 0..2 of `word`.
    #[inline(always)]
    fn of(word: u64) -> Kind {
        match word & KIND_MASK {
            0 => Kind::Normal,
            1 => Kind::NoRule,
            2 => Kind::Signal,
            _ => Kind::End,
        }
    }
}

/// A compact unwind rule for one address, tagged with the module epoch it
/// was computed in (the layout is in the module docs; step flags are 0).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub(super) struct Rule(u64);

impl Rule {
    /// A rule of a kind that reads no register ([`Kind::NoRule`],
    /// [`Kind::Signal`], [`Kind::End`]).
    #[inline]
    pub(super) fn only(kind: Kind, epoch: u32) -> Rule {
        Rule::pack(kind, false, 0, false, 0, epoch)
    }

    /// A [`Kind::Normal`] rule. The offsets must fit their fields (see
    /// [`Rule::fits_cfa_off`], [`Rule::fits_rbp_off`]); they are truncated to
    /// them.
    #[inline]
    pub(super) fn normal(
        cfa_rbp: bool,
        cfa_off: i64,
        rbp_saved: bool,
        rbp_off: i64,
        epoch: u32,
    ) -> Rule {
        Rule::pack(Kind::Normal, cfa_rbp, cfa_off, rbp_saved, rbp_off, epoch)
    }

    fn pack(
        kind: Kind,
        cfa_rbp: bool,
        cfa_off: i64,
        rbp_saved: bool,
        rbp_off: i64,
        epoch: u32,
    ) -> Rule {
        Rule(
            kind.bits()
                | if cfa_rbp { CFA_RBP } else { 0 }
                | if rbp_saved { RBP_SAVED } else { 0 }
                | ((cfa_off as u64) & low_bits(CFA_OFF_BITS)) << CFA_OFF_SHIFT
                | ((rbp_off as u64) & low_bits(RBP_OFF_BITS)) << RBP_OFF_SHIFT
                | ((epoch & EPOCH_MASK) as u64) << EPOCH_SHIFT,
        )
    }

    /// Whether `off` fits the CFA offset's field.
    pub(super) fn fits_cfa_off(off: i64) -> bool {
        signed_range(CFA_OFF_BITS).contains(&off)
    }

    /// Whether `off` fits the field of rbp's slot offset.
    pub(super) fn fits_rbp_off(off: i64) -> bool {
        signed_range(RBP_OFF_BITS).contains(&off)
    }

    /// The packed word, as the cache stores it.
    #[inline(always)]
    pub(super) fn to_bits(self) -> u64 {
        self.0
    }

    /// The rule whose packed word the cache stored ([`Rule::to_bits`]).
    #[inline(always)]
    pub(super) fn from_bits(bits: u64) -> Rule {
        Rule(bits)
    }

    #[inline(always)]
    pub(super) fn kind(self) -> Kind {
        Kind::of(self.0)
    }

    /// Whether the CFA is computed from rbp (else from rsp).
    #[inline(always)]
    pub(super) fn cfa_rbp(self) -> bool {
        self.0 & CFA_RBP != 0
    }

    /// Whether rbp is restored from the slot at CFA + [`Rule::rbp_off`].
    #[inline(always)]
    pub(super) fn rbp_saved(self) -> bool {
        self.0 & RBP_SAVED != 0
    }

    /// The CFA's offset from its base register.
    #[inline(always)]
    pub(super) fn cfa_off(self) -> i64 {
        // Sign-extends the field: its top bit moved to bit 31, then back.
        (((self.0 >> CFA_OFF_SHIFT) as u32) << (32 - CFA_OFF_BITS)) as i32 as i64
            >> (32 - CFA_OFF_BITS)
    }

    /// The offset of rbp's slot from the CFA.
    #[inline(always)]
    pub(super) fn rbp_off(self) -> i64 {
        // The field is RBP_OFF_BITS = 16 bits wide: an i16.
        (self.0 >> RBP_OFF_SHIFT) as u16 as i16 as i64
    }

    /// The low 16 bits of the epoch the rule was computed in.
    #[inline(always)]
    fn epoch(self) -> u32 {
        (self.0 >> EPOCH_SHIFT) as u32 & EPOCH_MASK
    }

    /// Whether the rule was computed in `epoch` (as far as 16 bits tell).
    #[inline(always)]
    pub(super) fn is_of_epoch(self, epoch: u32) -> bool {
        self.epoch() == (epoch & EPOCH_MASK)
    }
}

/// The rule of a recorded step: a [`Rule`] with the step's flags
/// ([`STEP_EXACT`], [`STEP_HIDDEN`], and [`STEP_LAST`] while a replay runs)
/// in its free bits. Equal words mean the same rule from the same kind of
/// address, adding a frame or not alike.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub(super) struct StepRule(u64);

impl StepRule {
    /// The rule of an empty record's steps.
    pub(super) const ZERO: StepRule = StepRule(0);

    /// The step that applies `rule` at an address that is exact (else a
    /// return address) and `hidden` (in this library) or not.
    #[inline(always)]
    pub(super) fn new(rule: Rule, exact: bool, hidden: bool) -> StepRule {
        StepRule(rule.0 | if exact { STEP_EXACT } else { 0 } | if hidden { STEP_HIDDEN } else { 0 })
    }

    /// The rule without the flags [`STEP_EXACT`] and [`STEP_HIDDEN`]
    /// ([`STEP_LAST`] is never set outside a replay).
    #[inline(always)]
    pub(super) fn rule(self) -> Rule {
        Rule(self.0 & !(STEP_EXACT | STEP_HIDDEN))
    }

    /// Whether the step's pc is exact, not a return address.
    #[inline(always)]
    pub(super) fn exact(self) -> bool {
        self.0 & STEP_EXACT != 0
    }

    /// Whether the step's pc lies in this library (the step adds no frame).
    #[inline(always)]
    pub(super) fn hidden(self) -> bool {
        self.0 & STEP_HIDDEN != 0
    }

    /// Whether the step carries the replay's end mark.
    #[inline(always)]
    pub(super) fn last(self) -> bool {
        self.0 & STEP_LAST != 0
    }

    /// The same step with the replay's end mark.
    #[inline(always)]
    pub(super) fn marked_last(self) -> StepRule {
        StepRule(self.0 | STEP_LAST)
    }

    /// The frame a step from `pc` reports: `pc` if it is a return address,
    /// `pc + 1` if it is exact (consumers look up `frame - 1` alike).
    #[inline(always)]
    pub(super) fn frame(self, pc: u64) -> u64 {
        pc.wrapping_add(self.exact() as u64)
    }

    /// The common step, unmarked: [`Kind::Normal`], CFA from rsp, rbp not
    /// restored, a return address, a frame (no bit of [`FAST_MASK`] or
    /// [`STEP_LAST`]).
    #[inline(always)]
    pub(super) fn is_plain(self) -> bool {
        self.0 & (FAST_MASK | STEP_LAST) == 0
    }

    /// The common step, unmarked, but with rbp restored from its slot.
    #[inline(always)]
    pub(super) fn is_plain_but_rbp_saved(self) -> bool {
        self.0 & (FAST_MASK & !RBP_SAVED | STEP_LAST) == 0
    }

    #[inline(always)]
    pub(super) fn kind(self) -> Kind {
        Kind::of(self.0)
    }

    /// As [`Rule::cfa_rbp`].
    #[inline(always)]
    pub(super) fn cfa_rbp(self) -> bool {
        self.0 & CFA_RBP != 0
    }

    /// As [`Rule::rbp_saved`].
    #[inline(always)]
    pub(super) fn rbp_saved(self) -> bool {
        self.0 & RBP_SAVED != 0
    }

    /// As [`Rule::rbp_off`] (the flags lie outside the field).
    #[inline(always)]
    pub(super) fn rbp_off(self) -> i64 {
        self.rule().rbp_off()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules pack and unpack losslessly, including negative offsets.
    #[test]
    fn rule_packing() {
        let r = Rule::normal(true, -16, true, -24, 0xabcd);
        assert_eq!(
            (
                r.kind(),
                r.cfa_rbp(),
                r.cfa_off(),
                r.rbp_saved(),
                r.rbp_off(),
                r.epoch()
            ),
            (Kind::Normal, true, -16, true, -24, 0xabcd)
        );
        let r = Rule::pack(Kind::Signal, false, 8_000_000, false, 0, 1);
        assert_eq!((r.kind(), r.cfa_off()), (Kind::Signal, 8_000_000));
    }

    /// Each kind survives packing, the epoch is compared on 16 bits, and the
    /// offsets' limits are the fields' widths.
    #[test]
    fn kinds_epochs_and_limits() {
        for kind in [Kind::Normal, Kind::NoRule, Kind::Signal, Kind::End] {
            assert_eq!(Rule::only(kind, 7).kind(), kind);
        }
        let r = Rule::only(Kind::End, 0x1_0005);
        assert!(r.is_of_epoch(5) && r.is_of_epoch(0x7_0005) && !r.is_of_epoch(6));
        assert!(Rule::fits_cfa_off(-(1 << 23)) && !Rule::fits_cfa_off(1 << 23));
        assert!(Rule::fits_rbp_off(-32768) && Rule::fits_rbp_off(32767));
        assert!(!Rule::fits_rbp_off(32768) && !Rule::fits_rbp_off(-32769));
        let r = Rule::normal(false, (1 << 23) - 1, true, i16::MIN as i64, 0xffff);
        assert_eq!((r.cfa_off(), r.rbp_off()), ((1 << 23) - 1, -32768));
        assert_eq!(
            Rule::normal(false, -(1 << 23), false, 0, 0).cfa_off(),
            -(1 << 23)
        );
    }

    /// A step's flags leave the rule's fields as they are, and come off again.
    #[test]
    fn step_flags() {
        let rule = Rule::normal(true, -16, true, -24, 3);
        for (exact, hidden) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = StepRule::new(rule, exact, hidden);
            assert_eq!((s.exact(), s.hidden(), s.last()), (exact, hidden, false));
            assert_eq!(s.rule(), rule);
            assert_eq!(
                (s.kind(), s.cfa_rbp(), s.rbp_saved()),
                (Kind::Normal, true, true)
            );
            assert_eq!(s.rbp_off(), -24);
            assert_eq!(s.frame(0x1000), 0x1000 + exact as u64);
            let m = s.marked_last();
            assert!(m.last() && !m.is_plain() && !m.is_plain_but_rbp_saved());
        }
        let plain = StepRule::new(Rule::normal(false, 16, false, 0, 9), false, false);
        assert!(plain.is_plain() && plain.is_plain_but_rbp_saved());
        let saved = StepRule::new(Rule::normal(false, 16, true, -16, 9), false, false);
        assert!(!saved.is_plain() && saved.is_plain_but_rbp_saved());
        assert!(!StepRule::new(Rule::normal(true, 16, false, 0, 9), false, false).is_plain());
        assert!(!StepRule::new(Rule::normal(false, 16, false, 0, 9), true, false).is_plain());
        assert!(!StepRule::new(Rule::normal(false, 16, false, 0, 9), false, true).is_plain());
        assert!(!StepRule::new(Rule::only(Kind::Signal, 9), false, false).is_plain());
    }
}
