//! A cheap pre-scan of the spec text that refuses excessive nesting before the YAML parser
//! builds a deep value: a spec nested thousands of levels deep would otherwise take the
//! parser, the field-path reporting and the location search a long time to refuse, with
//! an error as long as the nesting.
//!
//! The depth counted is a close estimate, found in one pass over the text: the block levels
//! open at a line (one per deeper indentation, one per `- ` item marker) plus the flow
//! brackets (`[`, `{`) open at a character. Quoted strings, comments and block scalars
//! (`|`, `>`) do not count.

use super::error::{Location, SpecError};

/// The deepest nesting a spec may use. The committed sweeps stay within 12 levels.
pub(crate) const MAX_DEPTH: usize = 64;

/// Refuses `text` when it nests deeper than [`MAX_DEPTH`], pointing at the first place
/// that does.
pub(crate) fn check(text: &str) -> Result<(), SpecError> {
    match first_too_deep(text, MAX_DEPTH) {
        None => Ok(()),
        Some(at) => {
            let mut e = SpecError::new("", format!("nesting deeper than {MAX_DEPTH} levels"))
                .hint("a sweep spec needs a few levels; check for unbalanced brackets");
            e.location = Some(at);
            Err(e)
        }
    }
}

/// Where the nesting of `text` first exceeds `max`, if it does.
fn first_too_deep(text: &str, max: usize) -> Option<Location> {
    let mut scan = Scan::default();
    for (i, line) in text.lines().enumerate() {
        if let Some(column) = scan.line(line, max) {
            return Some(Location {
                line: i + 1,
                column,
            });
        }
    }
    None
}

/// State carried from line to line.
#[derive(Default)]
struct Scan {
    /// Columns of the open block nodes, increasing.
    block: Vec<usize>,
    /// Open flow brackets (flow collections may span lines).
    flow: usize,
    /// Inside a block scalar whose indicator line was indented this much.
    block_scalar: Option<usize>,
}

impl Scan {
    /// Scans one line; the 1-based column where the depth first exceeds `max`, if any.
    fn line(&mut self, line: &str, max: usize) -> Option<usize> {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        let blank = content.is_empty() || content.starts_with('#');
        if let Some(scalar_indent) = self.block_scalar {
            if blank || indent > scalar_indent {
                return None;
            }
            self.block_scalar = None;
        }
        if blank {
            return None;
        }
        let bytes = line.as_bytes();
        let mut i = indent;
        if self.flow == 0 {
            while self.block.last().is_some_and(|&c| c >= indent) {
                self.block.pop();
            }
            self.block.push(indent);
            // Each `- ` item marker opens one more level.
            while bytes.get(i) == Some(&b'-') && matches!(bytes.get(i + 1), Some(b' ') | None) {
                i += 1;
                while bytes.get(i) == Some(&b' ') {
                    i += 1;
                }
                self.block.push(i);
            }
            if self.block.len() > max {
                return Some(i + 1);
            }
        }
        self.flow_chars(bytes, i, indent, max)
    }

    /// Counts the flow brackets of `bytes[i..]`, skipping quoted strings and comments, and
    /// notes a block scalar indicator at the end of a block line.
    fn flow_chars(
        &mut self,
        bytes: &[u8],
        mut i: usize,
        indent: usize,
        max: usize,
    ) -> Option<usize> {
        // In block context a bracket opens a flow collection only where a value starts.
        let mut value_start = true;
        let mut code_end = bytes.len();
        while i < bytes.len() {
            let c = bytes[i];
            let spaced = i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t';
            match c {
                b'#' if spaced => {
                    code_end = i;
                    break;
                }
                b'"' | b'\'' if self.flow > 0 || value_start => {
                    i = skip_quoted(bytes, i);
                    value_start = false;
                    continue;
                }
                b'[' | b'{' if self.flow > 0 || value_start => {
                    self.flow += 1;
                    if self.block.len() + self.flow > max {
                        return Some(i + 1);
                    }
                }
                b']' | b'}' if self.flow > 0 => self.flow -= 1,
                b' ' | b'\t' => {}
                b':' | b'-' | b'?' if self.flow == 0 => {
                    value_start = matches!(bytes.get(i + 1), Some(b' ') | None);
                }
                _ => value_start = false,
            }
            i += 1;
        }
        if self.flow == 0 && ends_with_block_scalar_indicator(&bytes[..code_end]) {
            self.block_scalar = Some(indent);
        }
        None
    }
}

/// The index just past the quoted string that starts at `bytes[start]` (or the line end).
fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 1,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 1,
            q if q == quote => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Whether block-context `code` (a line without its comment) ends with a block scalar
/// indicator: `|` or `>`, optional chomping and indentation indicators, as a value.
fn ends_with_block_scalar_indicator(code: &[u8]) -> bool {
    let code = code.trim_ascii_end();
    let token_start = code
        .iter()
        .rposition(|&c| c == b' ' || c == b'\t')
        .map_or(0, |p| p + 1);
    let (before, token) = code.split_at(token_start);
    matches!(token.first(), Some(b'|' | b'>'))
        && token[1..]
            .iter()
            .all(|&c| c == b'+' || c == b'-' || c.is_ascii_digit())
        && matches!(before.trim_ascii().last(), None | Some(b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, max: usize) -> bool {
        first_too_deep(text, max).is_none()
    }

    #[test]
    fn committed_sweeps_pass_with_room_to_spare() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                depth_ok(&text, 12),
                "{} nests deeper than 12",
                path.display()
            );
        }
    }

    #[test]
    fn deep_flow_block_and_item_nesting_is_found_where_it_crosses_the_limit() {
        let flow = format!("name: t\nbase: {}1{}\n", "[".repeat(100), "]".repeat(100));
        // `base:` is one block level, so the 4th bracket is the 5th level.
        assert_eq!(
            first_too_deep(&flow, 4),
            Some(Location {
                line: 2,
                column: 10
            })
        );
        let items = format!("name: t\nbase:\n  {}x\n", "- ".repeat(50));
        assert_eq!(first_too_deep(&items, 8).map(|l| l.line), Some(3));
        let mut block = String::from("name: t\n");
        for d in 0..20 {
            block.push_str(&format!("{}k{d}:\n", " ".repeat(d)));
        }
        // Line 2 + d holds `k{d}`, the (d + 1)-th level.
        assert_eq!(first_too_deep(&block, 10).map(|l| l.line), Some(12));
        assert!(depth_ok(&block, 20));
    }

    #[test]
    fn brackets_in_strings_comments_plain_scalars_and_block_scalars_do_not_count() {
        let text = "\
name: t # [[[[[[[[[[
description: |
  [[[[[[[[[[[[
  {{{{{{{{{{{{
base:
  note: \"[[[[[[[[[[\"
  other: '{{{{{{{{{{'
  plain: a [[[[[[[[[[ b
  list: [1, [2, 3], {a: 4}]
";
        assert!(depth_ok(text, 4), "{:?}", first_too_deep(text, 4));
    }
}
