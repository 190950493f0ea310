//! Units and number formatting, one rule each for every output: counts with
//! thousands separators as valgrind prints them, nouns in the right number,
//! byte counts in binary units, and sizes as users write them (`32k`, `1m`).
//! Uses only std.

/// `n` with thousands separators and the noun in the right number: `1 block`, `2,048 blocks`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// A signed count with thousands separators (`-1,024`).
pub fn signed(n: i64) -> String {
    if n < 0 {
        format!("-{}", thousands(n.unsigned_abs()))
    } else {
        thousands(n as u64)
    }
}

/// Formats `n` with thousands separators, as valgrind does.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A size in bytes with an optional binary suffix (k, m, g, or kib...).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 4096, 32k, 1m)"))?;
    let shift = match t[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(format!("{s:?} is not a size (e.g. 4096, 32k, 1m)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A byte count in binary units, one decimal (`1.5 MiB`).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thousands separators.
    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4323), "4,323");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    /// One decimal in binary units; bytes as such.
    #[test]
    fn human_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    /// Nouns in the right number, with separators.
    #[test]
    fn plurals() {
        assert_eq!(plural(1, "block", "blocks"), "1 block");
        assert_eq!(plural(2048, "block", "blocks"), "2,048 blocks");
        assert_eq!(signed(-1024), "-1,024");
    }
}
