//! The content filter's word list (`--blocklist FILE`) and its matcher: one Aho-Corasick automaton
//! built per (re)load, linear in the text whatever the entries (no backtracking).
//!
//! # File syntax
//! One entry per line, trimmed; blank lines and lines starting with `#` are skipped. A plain entry
//! (`darn`, or a phrase `darn it`) matches a whole word: neither the character before the match nor
//! the one after it is a letter or digit (`char::is_alphanumeric`, Unicode-aware), so `ass` does not
//! match `class`. A trailing `*` (`darn*`) also matches words that start with the entry (`darned`), a
//! leading `*` (`*darn`) words that end with it, both (`*darn*`) the entry anywhere. A `*` anywhere
//! else, an entry of nothing but `*`, an entry over [`MAX_ENTRY_BYTES`] bytes, more than
//! [`MAX_ENTRIES`] entries or a file over [`MAX_FILE_BYTES`] is an error naming the line.
//!
//! # Case
//! Matching is case-insensitive by Unicode lowercasing (`char::to_lowercase`, character by character)
//! of both the entries and the text: `ÉCOLE` matches `école`. Lowercasing is not case folding: `Straße` does not match
//! `STRASSE`. No Unicode normalisation either: a decomposed `é` (`e` + U+0301) is not a composed one.
//!
//! # Cost
//! ASCII text is scanned as it is (the automaton is ASCII case-insensitive: no copy at all); other
//! text through one lowercased copy (plus, only when lowercasing changed some character's length,
//! a table of where each lowercased byte came from). Every match the automaton reports (all of
//! them, overlapping: a longer entry that fails its word boundary must not hide a shorter one that
//! passes) costs two boundary checks; entries are at most [`MAX_ENTRY_BYTES`] long and kept once
//! each, so at most 4 × 128 matches (a word with each of its four anchorings) end at one byte and
//! the whole check stays linear in the text. Masking keeps one range per end byte and writes the
//! result in one pass.

use std::ops::Range;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Longest entry, in bytes (after lowercasing, without its `*`).
pub const MAX_ENTRY_BYTES: usize = 128;
/// Most entries one file may hold.
pub const MAX_ENTRIES: usize = 1_000_000;
/// Largest blocklist file, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why a blocklist could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BlocklistError {
    /// The file could not be read.
    #[error("cannot read the blocklist ({}): {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("cannot load the blocklist ({}): the file is {size} bytes; at most {MAX_FILE_BYTES} are read", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A line is not a valid entry (or is one too many).
    #[error("cannot load the blocklist ({}): line {line}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The automaton could not be built (too large for its state identifiers).
    #[error("cannot load the blocklist ({}): {reason}", path.display())]
    Build {
        /// The file.
        path: PathBuf,
        /// The builder's explanation.
        reason: String,
    },
}

/// Which sides of an entry must be a word boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Anchors {
    start: bool,
    end: bool,
}

/// A loaded word list: the automaton over its entries and each entry's anchors.
#[derive(Debug, Default)]
pub struct Blocklist {
    /// `None` for an empty list (nothing to scan).
    automaton: Option<AhoCorasick>,
    /// By pattern index.
    anchors: Vec<Anchors>,
}

/// Why one line is not an entry (the caller adds the file and the line number).
fn entry(line: &str) -> Result<Option<(String, Anchors)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (start, rest) = match line.strip_prefix('*') {
        Some(rest) => (false, rest),
        None => (true, line),
    };
    let (end, word) = match rest.strip_suffix('*') {
        Some(word) => (false, word),
        None => (true, rest),
    };
    if word.trim().is_empty() {
        return Err("an entry needs something besides `*`".into());
    }
    if word.contains('*') {
        return Err("`*` may only start or end an entry (prefix, suffix or substring match)".into());
    }
    let (word, _) = lower(word);
    if word.len() > MAX_ENTRY_BYTES {
        return Err(format!("the entry is {} bytes; at most {MAX_ENTRY_BYTES}", word.len()));
    }
    Ok(Some((word, Anchors { start, end })))
}

impl Blocklist {
    /// Parses a list in the file syntax (module docs); `path` only names the file in errors.
    ///
    /// # Errors
    /// [`BlocklistError::Line`] for a bad entry, [`BlocklistError::Build`] if the automaton cannot
    /// be built.
    pub fn parse(text: &str, path: &Path) -> Result<Blocklist, BlocklistError> {
        let mut words = Vec::new();
        let mut anchors = Vec::new();
        // A repeated entry is kept once: with at most four entries per word (its anchors) and
        // words of at most MAX_ENTRY_BYTES, at most 4 × 128 matches end at one byte of text.
        let mut seen = std::collections::HashSet::new();
        for (index, line) in text.lines().enumerate() {
            let bad = |reason: String| BlocklistError::Line { path: path.to_path_buf(), line: index + 1, reason };
            let Some((word, anchor)) = entry(line).map_err(bad)? else { continue };
            if !seen.insert((word.clone(), anchor)) {
                continue;
            }
            if words.len() == MAX_ENTRIES {
                return Err(bad(format!("more than {MAX_ENTRIES} entries")));
            }
            words.push(word);
            anchors.push(anchor);
        }
        if words.is_empty() {
            return Ok(Blocklist::default());
        }
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&words)
            .map_err(|err| BlocklistError::Build { path: path.to_path_buf(), reason: err.to_string() })?;
        Ok(Blocklist { automaton: Some(automaton), anchors })
    }

    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// [`BlocklistError`] naming the file and the reason.
    pub fn load(path: &Path) -> Result<Blocklist, BlocklistError> {
        let read = |source| BlocklistError::Read { path: path.to_path_buf(), source };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_FILE_BYTES {
            return Err(BlocklistError::TooLarge { path: path.to_path_buf(), size });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|err| BlocklistError::Line {
            path: path.to_path_buf(),
            line: 1 + err.as_bytes()[..err.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count(),
            reason: "not UTF-8".into(),
        })?;
        Blocklist::parse(&text, path)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether the list has no entry (nothing is ever matched).
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Whether `text` contains an entry.
    pub fn matches(&self, text: &str) -> bool {
        let mut found = false;
        self.scan(text, |_, _| {
            found = true;
            false
        });
        found
    }

    /// `text` with every character of every match replaced by `*` (a `*` entry's match is the whole
    /// word it is part of: `darn*` masks all of `darned`); `None` when nothing matched.
    pub fn mask(&self, text: &str) -> Option<String> {
        // Matches come in the order they end; of those ending at one byte only the longest is
        // kept (it covers the others), so there are at most as many ranges as bytes.
        let mut ranges: Vec<(Range<usize>, Anchors)> = Vec::new();
        self.scan(text, |range, anchors| {
            match ranges.last_mut() {
                Some((last, last_anchors)) if last.end == range.end => {
                    if range.start < last.start {
                        *last = range;
                        last_anchors.start = anchors.start;
                    }
                    last_anchors.end &= anchors.end;
                }
                _ => ranges.push((range, anchors)),
            }
            true
        });
        if ranges.is_empty() {
            return None;
        }
        ranges.sort_unstable_by_key(|(r, _)| r.start);
        let mut out = String::with_capacity(text.len());
        // Written up to here; it is always the end of a word (or of a match at a word boundary),
        // so a range ending before it is covered, and no byte is scanned twice when widening.
        let mut at = 0;
        for (range, anchors) in ranges {
            if range.end <= at {
                continue;
            }
            let mut start = range.start.max(at);
            if !anchors.start {
                // A `*` entry's match is the whole word it is part of: back to the word's start.
                let back = text[at..start].chars().rev().take_while(|c| c.is_alphanumeric());
                start -= back.map(char::len_utf8).sum::<usize>();
            }
            let mut end = range.end;
            if !anchors.end {
                end += text[end..].chars().take_while(|c| c.is_alphanumeric()).map(char::len_utf8).sum::<usize>();
            }
            out.push_str(&text[at..start]);
            out.extend(text[start..end].chars().map(|_| '*'));
            at = end;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    /// Calls `found` with the byte range, in `text`, of every match that passes its word-boundary
    /// checks (and its entry's anchors), until it returns `false`.
    fn scan(&self, text: &str, mut found: impl FnMut(Range<usize>, Anchors) -> bool) {
        let Some(automaton) = &self.automaton else { return };
        if text.is_ascii() {
            // The automaton is ASCII case-insensitive: ASCII text needs no lowercased copy.
            for m in automaton.find_overlapping_iter(text) {
                if let Some(anchors) = self.passes(text, m.pattern().as_usize(), m.start(), m.end())
                    && !found(m.start()..m.end(), anchors)
                {
                    return;
                }
            }
            return;
        }
        let (lower, origin) = lowercase(text);
        for m in automaton.find_overlapping_iter(&lower) {
            let (start, end) = match &origin {
                None => (m.start(), m.end()),
                Some(origin) => {
                    // The original characters the match's first and last bytes came from.
                    let start = origin[m.start()];
                    let last = origin[m.end() - 1];
                    (start, last + text[last..].chars().next().map_or(0, char::len_utf8))
                }
            };
            if let Some(anchors) = self.passes(text, m.pattern().as_usize(), start, end)
                && !found(start..end, anchors)
            {
                return;
            }
        }
    }

    /// The entry's anchors when a match of pattern `pattern` at `start..end` of the original
    /// `text` has the word boundaries the entry asks for.
    fn passes(&self, text: &str, pattern: usize, start: usize, end: usize) -> Option<Anchors> {
        let anchors = *self.anchors.get(pattern)?;
        let open_before = !(anchors.start && word_char(text[..start].chars().next_back()));
        let open_after = !(anchors.end && word_char(text[end..].chars().next()));
        let ok = open_before && open_after;
        ok.then_some(anchors)
    }
}

fn word_char(c: Option<char>) -> bool {
    c.is_some_and(char::is_alphanumeric)
}

/// `text` lowercased character by character (`char::to_lowercase`, ASCII characters directly), in
/// one pass that also tells whether every character kept its length in bytes (`str::to_lowercase`
/// and a second pass for that measured 1.7 µs and 3 µs on a 150-byte accented line). Entries are
/// lowercased the same way, so Σ is σ wherever it is (no final-sigma rule).
fn lower(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut aligned = true;
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            let before = out.len();
            out.extend(c.to_lowercase());
            aligned &= out.len() - before == c.len_utf8();
        }
    }
    (out, aligned)
}

/// `text` lowercased, and — only when lowercasing changed the length of some character — for each
/// byte of the copy, the offset in `text` of the character it came from (`None`: offsets agree).
fn lowercase(text: &str) -> (String, Option<Vec<usize>>) {
    let (lower, aligned) = lower(text);
    if aligned {
        return (lower, None);
    }
    let mut origin = Vec::with_capacity(lower.len());
    for (at, c) in text.char_indices() {
        let len: usize = c.to_lowercase().map(char::len_utf8).sum();
        origin.extend(std::iter::repeat_n(at, len));
    }
    (lower, Some(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Blocklist {
        Blocklist::parse(text, Path::new("test.txt")).expect("a valid list")
    }

    fn check(entries: &str, text: &str, masked: Option<&str>) {
        let list = list(entries);
        assert_eq!(list.mask(text).as_deref(), masked, "{entries:?} in {text:?}");
        assert_eq!(list.matches(text), masked.is_some(), "{entries:?} in {text:?}");
    }

    #[test]
    fn whole_words_by_default() {
        check("ass", "a class act", None);
        check("ass", "you ass!", Some("you ***!"));
        check("ass", "Ass", Some("***"));
        check("ass", "ass-hat", Some("***-hat"));
        check("ass", "bass ass7 assz", None);
        check("darn it", "well darn it all", Some("well ******* all"));
    }

    #[test]
    fn stars_make_prefix_suffix_and_substring_entries() {
        check("darn*", "darned darn undarned", Some("****** **** undarned"));
        check("*darn", "undarn darned", Some("****** darned"));
        check("*darn*", "undarned", Some("********"));
    }

    #[test]
    fn case_and_unicode() {
        check("école", "ÉCOLE", Some("*****"));
        check("ÉCOLE", "une école", Some("une *****"));
        check("école", "écoles", None);
        // Lowercasing is not case folding.
        check("straße", "STRASSE", None);
        check("straße", "STRAẞE", Some("******"));
        // Letters of other scripts are word characters.
        check("кот", "котик кот", Some("котик ***"));
        check("кот", "Кот", Some("***"));
        check("ass", "éass", None);
    }

    #[test]
    fn lowercasing_that_changes_lengths_keeps_offsets_right() {
        // U+212A KELVIN SIGN (3 bytes) lowercases to `k` (1 byte); İ (2 bytes) to `i̇` (3 bytes).
        check("kilo", "İ \u{212A}ILO x", Some("İ **** x"));
        check("x", "İİ x İ", Some("İİ * İ"));
        check("ΣΑΣ", "ΣΑΣ", Some("***"));
    }

    #[test]
    fn a_longer_entry_failing_its_boundary_does_not_hide_a_shorter_one() {
        check("abc\nab*", "abcd", Some("****"));
        check("abcd\nbc*", "abcdx bcd", Some("abcdx ***"));
    }

    #[test]
    fn overlapping_matches_are_masked_once() {
        check("*ab*\n*bc*", "abc", Some("***"));
        check("*a*\n*aa*\n*aaa*", &"a".repeat(1000), Some(&"*".repeat(1000)));
        check("b*\nbc\n*cd", "bcd x bc", Some("*** x **"));
        // The same entry twice is kept once.
        assert_eq!(list("darn\ndarn\nDARN\ndarn*").len(), 2);
    }

    #[test]
    fn comments_blank_lines_and_errors() {
        assert!(list("# nothing\n\n   \n").is_empty());
        assert_eq!(list("a\n# b\n c \n").len(), 2);
        let err = |text: &str| Blocklist::parse(text, Path::new("l.txt")).unwrap_err().to_string();
        assert_eq!(err("ok\n*\n"), "cannot load the blocklist (l.txt): line 2: an entry needs something besides `*`");
        assert!(err("a*b").contains("line 1: `*` may only start or end"), "{}", err("a*b"));
        assert!(err(&"x".repeat(MAX_ENTRY_BYTES + 1)).contains("at most 128"));
        assert!(list(&"y".repeat(MAX_ENTRY_BYTES)).matches(&"y".repeat(MAX_ENTRY_BYTES)));
    }

    #[test]
    fn an_empty_list_matches_nothing() {
        assert!(!Blocklist::default().matches("anything"));
        assert_eq!(Blocklist::default().mask("anything"), None);
    }
}
