//! The latency marker carried inside message text:
//! `lt:<run-id>:<sender>:<seq>:<intended_ns>:<sent_ns>:<padding>`. It survives any server that
//! echoes text verbatim; anything that does not parse as a marker of this run is ignored.

use std::fmt::Write;

/// One parsed marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub run_id: u64,
    pub sender: u32,
    pub seq: u64,
    /// When the schedule wanted the message sent (ns since the generator's clock origin).
    pub intended_ns: u64,
    /// When the generator actually wrote it.
    pub sent_ns: u64,
}

/// What fills a message after its marker (`--text`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Text {
    /// `x` repeated (compresses to almost nothing).
    #[default]
    Pad,
    /// English-like chat sentences from a built-in word list, fixed by sender and sequence.
    Chat,
}

/// Writes the marker into `out` (cleared first), padded with `x` up to `size` bytes total.
#[cfg(test)]
pub fn format_into(out: &mut String, m: &Marker, size: usize) {
    format_with(out, m, size, Text::Pad);
}

/// Writes the marker into `out` (cleared first), filled with `text` up to `size` bytes total.
pub fn format_with(out: &mut String, m: &Marker, size: usize, text: Text) {
    out.clear();
    let _ = write!(out, "lt:{:016x}:{}:{}:{}:{}:", m.run_id, m.sender, m.seq, m.intended_ns, m.sent_ns);
    match text {
        Text::Pad => {
            while out.len() < size {
                out.push('x');
            }
        }
        Text::Chat => crate::chat::fill(out, size, m.sender, m.seq),
    }
}

fn field(it: &mut std::str::Split<'_, char>) -> Option<u64> {
    it.next()?.parse().ok()
}

/// Parses a marker; `None` for anything else (other clients' chatter, server notices).
pub fn parse(s: &str) -> Option<Marker> {
    let rest = s.strip_prefix("lt:")?;
    let mut it = rest.split(':');
    let run_id = u64::from_str_radix(it.next()?, 16).ok()?;
    let sender = u32::try_from(field(&mut it)?).ok()?;
    let seq = field(&mut it)?;
    let intended_ns = field(&mut it)?;
    let sent_ns = field(&mut it)?;
    // The padding field must exist (it may be empty).
    it.next()?;
    Some(Marker { run_id, sender, seq, intended_ns, sent_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_roundtrips_with_padding() {
        let m = Marker { run_id: 0xabc, sender: 7, seq: 42, intended_ns: 1_000, sent_ns: 1_500 };
        let mut s = String::new();
        format_into(&mut s, &m, 100);
        assert_eq!(s.len(), 100);
        assert!(s.starts_with("lt:0000000000000abc:7:42:1000:1500:xxx"));
        assert_eq!(parse(&s), Some(m));
        format_into(&mut s, &m, 0);
        assert_eq!(parse(&s), Some(m));
        format_with(&mut s, &m, 300, Text::Chat);
        assert_eq!(s.len(), 300);
        assert_eq!(parse(&s), Some(m), "{s}");
    }

    #[test]
    fn garbage_is_not_a_marker() {
        for s in ["", "hello", "lt:", "lt:zz:1:2:3:4:", "lt:1:2:3:4:5", "lt:1:-2:3:4:5:", "lt:1:2:3:4:5x:"] {
            assert_eq!(parse(s), None, "{s:?}");
        }
    }
}
