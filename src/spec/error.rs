//! Spec errors: each names the file, the line and column when the text has them, the
//! field path, what is wrong and what to do.

use std::fmt;
use std::path::PathBuf;

/// Where in the spec text something is (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub file: PathBuf,
    pub location: Option<Location>,
    /// Dotted field path (`base.optimizer.lr`, `grid.batch_size`), empty for the whole file.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl SpecError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: PathBuf::new(),
            location: None,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(loc) = self.location {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        let message = clip(&self.message, MAX_SHOWN);
        if self.path.is_empty() {
            write!(f, ": {message}")?;
        } else {
            write!(f, ": {}: {message}", clip(&self.path, MAX_SHOWN))?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {}", clip(h, MAX_SHOWN))?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// The most characters of a path, message or hint an error shows: parts of them echo the
/// spec (values, keys, serde's "invalid type: string ..."), which may be arbitrarily long.
pub(crate) const MAX_SHOWN: usize = 240;

/// `s` cut to at most `max` characters, marked with `…` when cut.
pub(crate) fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => s.into(),
        Some((end, _)) => format!("{}…", &s[..end]).into(),
    }
}

/// The closest candidate to `word` by edit distance, if it is close enough to be a typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 2).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" (and the same for enum
/// variants) into (the bad word, a "did you mean" hint).
pub(crate) fn unknown_word_hint(message: &str) -> Option<(String, String)> {
    let kind = if message.starts_with("unknown field") {
        "key"
    } else if message.starts_with("unknown variant") {
        "value"
    } else {
        return None;
    };
    let mut ticks = message.split('`').skip(1).step_by(2);
    let bad = ticks.next()?.to_string();
    let expected: Vec<&str> = ticks.collect();
    let hint = match nearest(&bad, expected.iter().copied()) {
        Some(n) => format!("unknown {kind} `{bad}`: did you mean `{n}`?"),
        None => format!("valid {kind}s here: {}", expected.join(", ")),
    };
    Some((bad, hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_key_is_suggested_for_a_typo_but_not_for_nonsense() {
        let keys = ["lr", "lr_scaling", "momentum", "weight_decay"];
        assert_eq!(nearest("momentun", keys), Some("momentum"));
        assert_eq!(nearest("weight_decy", keys), Some("weight_decay"));
        assert_eq!(nearest("zzzzzzzzzz", keys), None);
    }

    #[test]
    fn an_error_echoing_a_huge_value_stays_short() {
        let huge = "x".repeat(100_000);
        let mut e = SpecError::new(format!("base.{huge}"), format!("value `{huge}` is bad"))
            .hint(format!("did you mean `{huge}`?"));
        e.file = PathBuf::from("t.yaml");
        let shown = e.to_string();
        assert!(shown.len() < 4 * MAX_SHOWN, "{} bytes", shown.len());
        assert!(
            shown.starts_with("t.yaml: base.xxx") && shown.contains("…"),
            "{shown}"
        );
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééé", 2), "éé…");
    }

    #[test]
    fn serde_unknown_field_message_becomes_a_hint() {
        let (bad, hint) =
            unknown_word_hint("unknown field `temperatur`, expected one of `kind`, `temperature`")
                .unwrap();
        assert_eq!(bad, "temperatur");
        assert!(hint.contains("did you mean `temperature`"), "{hint}");
    }
}
