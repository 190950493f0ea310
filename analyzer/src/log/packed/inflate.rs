//! Bounded zstd decompression: a section is inflated into a buffer that
//! grows only as decompressed bytes fill it, never to a size a header claims.

/// Most bytes a zstd frame's window may take while streaming (2^23: the
/// writer's level uses 2^21 at most). A frame asking for more is refused
/// instead of allocated.
pub(crate) const WINDOW_LOG_MAX: u32 = 23;

/// A zstd decoder for [`inflate`].
pub(crate) fn decoder() -> std::io::Result<zstd::stream::raw::Decoder<'static>> {
    let mut d = zstd::stream::raw::Decoder::new()?;
    d.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(WINDOW_LOG_MAX))?;
    Ok(d)
}

/// Why [`inflate`] failed.
#[derive(Debug, PartialEq)]
pub(crate) enum Inflate {
    /// Not a complete, valid zstd frame.
    Corrupt,
    /// The data expands to more than the length claimed.
    More,
    /// The data expands to this many bytes, fewer than claimed.
    Less(usize),
}

impl Inflate {
    /// The error for the section `what` that claimed `claimed` bytes.
    pub(crate) fn why(&self, what: &str, claimed: usize) -> String {
        match self {
            Inflate::Corrupt => format!("{what} does not decompress"),
            Inflate::More => {
                format!("{what} decompresses to more than the {claimed} bytes it claims")
            }
            Inflate::Less(n) => {
                format!("{what} decompresses to {n} bytes, not the {claimed} it claims")
            }
        }
    }
}

/// Decompresses the single zstd frame `src` into `out`, which must come to
/// exactly `claimed` bytes. Neither the claim nor the frame's own header is
/// trusted with memory: `out` starts at a size in proportion to `src` and
/// doubles only as decompressed bytes actually fill it, up to one byte past
/// the claim (which proves the claim a lie).
pub(crate) fn inflate(
    dec: &mut zstd::stream::raw::Decoder<'static>,
    src: &[u8],
    claimed: usize,
    out: &mut Vec<u8>,
) -> Result<(), Inflate> {
    use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
    out.clear();
    dec.reinit().map_err(|_| Inflate::Corrupt)?;
    let limit = claimed.saturating_add(1);
    let first = src.len().saturating_mul(8).max(64 << 10).min(limit);
    if out.capacity() < first {
        out.reserve_exact(first);
    }
    let mut input = InBuffer::around(src);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                return Err(Inflate::More);
            }
            let grow = out.capacity().max(1).min(limit - out.len());
            out.reserve_exact(grow);
        }
        let pos = out.len();
        let mut o = OutBuffer::around_pos(out, pos);
        let left = dec.run(&mut input, &mut o).map_err(|_| Inflate::Corrupt)?;
        let full = o.pos() == o.capacity();
        if left == 0 {
            break;
        }
        if !full {
            // Room left, input used up, frame not finished: cut short.
            return Err(Inflate::Corrupt);
        }
    }
    if input.pos != src.len() {
        // Bytes after the frame: the writer writes one frame per section.
        return Err(Inflate::Corrupt);
    }
    match out.len() {
        n if n > claimed => Err(Inflate::More),
        n if n < claimed => Err(Inflate::Less(n)),
        _ => Ok(()),
    }
}
