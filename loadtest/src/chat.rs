//! `--text chat`: English-like chat sentences to fill a message's payload after its latency marker,
//! so compression (permessage-deflate) meets text like a chat's, not a run of one padding byte.
//! Deterministic: the words of a message follow from its sender and sequence number alone, so two
//! runs with the same options send the same text.

/// Common chat words, the most frequent first: a word's chance falls with its position (a rough
/// Zipf law), as in real text, where "the" and "you" are far commoner than "deploy".
const WORDS: &[&str] = &[
    "I",
    "the",
    "you",
    "to",
    "a",
    "it",
    "is",
    "and",
    "that",
    "this",
    "we",
    "in",
    "for",
    "of",
    "on",
    "be",
    "so",
    "have",
    "just",
    "can",
    "not",
    "do",
    "but",
    "was",
    "with",
    "are",
    "yeah",
    "what",
    "if",
    "me",
    "my",
    "at",
    "think",
    "know",
    "it's",
    "I'm",
    "get",
    "now",
    "like",
    "will",
    "there",
    "about",
    "one",
    "all",
    "they",
    "go",
    "up",
    "out",
    "no",
    "when",
    "don't",
    "ok",
    "see",
    "time",
    "how",
    "good",
    "today",
    "should",
    "would",
    "could",
    "then",
    "here",
    "need",
    "make",
    "more",
    "thanks",
    "let",
    "look",
    "still",
    "sure",
    "maybe",
    "right",
    "work",
    "back",
    "want",
    "new",
    "did",
    "also",
    "really",
    "going",
    "lol",
    "tomorrow",
    "meeting",
    "people",
    "some",
    "than",
    "again",
    "sorry",
    "last",
    "after",
    "before",
    "first",
    "issue",
    "fix",
    "test",
    "build",
    "branch",
    "review",
    "deploy",
    "server",
    "later",
    "lunch",
    "coffee",
    "week",
    "please",
    "which",
    "because",
    "anyone",
    "nice",
    "great",
    "problem",
    "change",
    "release",
    "working",
    "yesterday",
    "morning",
    "message",
    "call",
    "question",
    "probably",
    "something",
    "already",
    "tonight",
    "weekend",
    "send",
    "check",
    "help",
    "done",
    "next",
    "long",
    "little",
    "thing",
    "way",
    "cool",
    "agree",
    "idea",
    "plan",
    "minutes",
    "hour",
    "team",
    "email",
    "link",
    "ticket",
    "bug",
    "page",
];

/// How a sentence ends.
const ENDS: &[&str] = &[".", ".", ".", "?", "!", "", "...", " :)"];

/// A small xorshift* generator: the text needs spread, not quality.
struct Words(u64);

impl Words {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A word index, small ones likelier (the square of a uniform draw: density ∝ 1/√i).
    fn word(&mut self) -> &'static str {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        WORDS[((u * u) * WORDS.len() as f64) as usize % WORDS.len()]
    }
}

/// Appends chat sentences to `out` until it is `size` bytes long (cut at the last byte; every
/// word is ASCII). The text is a function of `sender` and `seq`.
pub fn fill(out: &mut String, size: usize, sender: u32, seq: u64) {
    let mut rng = Words((u64::from(sender) << 40) ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
    for _ in 0..3 {
        rng.next();
    }
    let start = out.len();
    while out.len() < size {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
        let n = 3 + (rng.next() % 10) as usize;
        for i in 0..n {
            let w = rng.word();
            if i == 0 {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    out.push(f.to_ascii_uppercase());
                    out.push_str(c.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(w);
            }
        }
        out.push_str(ENDS[(rng.next() % ENDS.len() as u64) as usize]);
    }
    if out.len() > size {
        out.truncate(size.max(start));
    }
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn fills_to_the_size_deterministically() {
        let (mut a, mut b, mut c) = (String::from("lt:"), String::from("lt:"), String::from("lt:"));
        fill(&mut a, 300, 3, 17);
        fill(&mut b, 300, 3, 17);
        fill(&mut c, 300, 3, 18);
        assert_eq!(a.len(), 300);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.is_ascii());
        // Words, not one repeated byte.
        let words: std::collections::HashSet<&str> = a.split_whitespace().collect();
        assert!(words.len() > 15, "{a}");
        let mut short = String::from("0123456789");
        fill(&mut short, 4, 0, 0);
        assert_eq!(short, "0123456789", "a payload already at its size is left alone");
    }
}
