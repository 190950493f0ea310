//! The slow path: the [`Rule`] for an address, from its object's `.eh_frame`.
//!
//! The object is found with `_dl_find_object` (lock-free,
//! async-signal-safe), its FDE through `.eh_frame_hdr`'s binary search
//! table, and the CFA program is evaluated by gimli into the caller's
//! fixed-size context ([`Ctx`]: no allocation). The row found is reduced to
//! a compact rule, or to [`Kind::NoRule`] if the rule cannot express it (a
//! CFA computed by a DWARF expression, a return address elsewhere than at
//! CFA - 8, offsets too large for their fields).

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, NativeEndian, ParsedEhFrameHdr,
    RegisterRule, UnwindSection, UnwindTableRow, X86_64,
};

use super::rule::{Kind, Rule};
use super::{Ctx, Store};
use crate::sys;

/// The end of the mapped segment of `obj` (as found for a code address) that
/// holds `addr`: `obj`'s own bounds if they contain it, else those
/// `_dl_find_object` gives for `addr`, if they belong to the same object
/// (the same link map). `None` if `addr` is not mapped in that object.
fn segment_end(obj: &sys::DlFindObject, addr: usize) -> Option<usize> {
    let (start, end) = (obj.map_start as usize, obj.map_end as usize);
    if (start..end).contains(&addr) {
        return Some(end);
    }
    let seg = sys::DlFindObject::find(addr)?;
    let (start, end) = (seg.map_start as usize, seg.map_end as usize);
    (seg.link_map == obj.link_map && (start..end).contains(&addr)).then_some(end)
}

/// An object's call frame information, as mapped.
struct Sections<'a> {
    /// `.eh_frame_hdr`, parsed (its search table).
    hdr: ParsedEhFrameHdr<EndianSlice<'a, NativeEndian>>,
    eh: EhFrame<EndianSlice<'a, NativeEndian>>,
    /// The sections' addresses, for gimli's relative pointers.
    bases: BaseAddresses,
}

/// `obj`'s `.eh_frame_hdr` and `.eh_frame`, each bounded by the segment that
/// holds it. `None` if either is missing or unmapped.
fn sections(obj: &sys::DlFindObject) -> Option<Sections<'_>> {
    // In an executable whose segments leave gaps, `_dl_find_object` gives the
    // bounds of the segment holding `pc` only; .eh_frame_hdr and .eh_frame may
    // lie in another segment of the same object (after the code, with
    // `-z separate-code`): each is bounded by its own segment.
    let hdr_addr = obj.eh_frame as usize;
    let hdr_end = segment_end(obj, hdr_addr)?;
    // SAFETY: .eh_frame_hdr lies in a read-only PT_LOAD segment of a loaded
    // object that stays mapped while its code can be on our stack; the slice
    // ends at that segment's end, and gimli reads only what the
    // (length-checked) CFI structures name.
    let hdr_bytes =
        unsafe { core::slice::from_raw_parts(hdr_addr as *const u8, hdr_end - hdr_addr) };
    let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_addr as u64);
    let hdr = EhFrameHdr::new(hdr_bytes, NativeEndian)
        .parse(&bases, 8)
        .ok()?;
    let eh_addr = hdr.eh_frame_ptr().direct().ok()? as usize;
    let end = segment_end(obj, eh_addr)?;
    // SAFETY: as above, inside the segment of the same object that holds .eh_frame.
    let eh_bytes = unsafe { core::slice::from_raw_parts(eh_addr as *const u8, end - eh_addr) };
    let mut eh = EhFrame::new(eh_bytes, NativeEndian);
    eh.set_address_size(8);
    let bases = bases.set_eh_frame(eh_addr as u64);
    Some(Sections { hdr, eh, bases })
}

/// Looks up the rule for `pc` (an exact instruction address) the slow way.
pub(super) fn compute(pc: u64, ctx: &mut Ctx, epoch: u32) -> Rule {
    let none = Rule::only(Kind::NoRule, epoch);
    let Some(obj) = sys::DlFindObject::find(pc as usize) else {
        return none;
    };
    if obj.eh_frame.is_null() {
        return none;
    }
    if !obj.link_map.is_null() {
        // SAFETY: `link_map` is the object's `struct link_map`, whose first
        // field (public ABI, <link.h>) is the load bias; it lives while the
        // object is loaded.
        let bias = unsafe { (obj.link_map as *const u64).read() };
        crate::modules::note_object(bias, obj.map_start as u64);
    }
    let Some(Sections { hdr, eh, bases }) = sections(&obj) else {
        return none;
    };
    let Some(table) = hdr.table() else {
        return none;
    };
    let Ok(fde) = table.fde_for_address(&eh, &bases, pc, EhFrame::cie_from_offset) else {
        return none;
    };
    let signal = fde.is_signal_trampoline();
    let Ok(row) = fde.unwind_info_for_address(&eh, &bases, ctx, pc) else {
        return none;
    };
    if signal {
        return Rule::only(Kind::Signal, epoch);
    }
    reduce(row, epoch)
}

/// The compact rule for the CFI row `row` (of a frame that is not a signal
/// trampoline), or [`Kind::NoRule`] if it cannot express it.
fn reduce(row: &UnwindTableRow<usize, Store>, epoch: u32) -> Rule {
    let none = Rule::only(Kind::NoRule, epoch);
    if matches!(row.register(X86_64::RA), Some(RegisterRule::Undefined)) {
        return Rule::only(Kind::End, epoch);
    }
    let (cfa_rbp, cfa_off) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RSP => {
            (false, *offset)
        }
        CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RBP => {
            (true, *offset)
        }
        _ => return none,
    };
    if !matches!(row.register(X86_64::RA), Some(RegisterRule::Offset(-8)))
        || !Rule::fits_cfa_off(cfa_off)
    {
        return none;
    }
    let (rbp_saved, rbp_off) = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::Undefined | RegisterRule::SameValue) => (false, 0),
        Some(RegisterRule::Offset(o)) if Rule::fits_rbp_off(o) => (true, o),
        _ => return none,
    };
    Rule::normal(cfa_rbp, cfa_off, rbp_saved, rbp_off, epoch)
}
