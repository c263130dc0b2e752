//! Finds the line and column of a dotted field path in YAML text, so that errors found
//! after parsing (a value out of range, an unknown key deep in `base`) still point at the
//! spot in the file. A light scanner over block mappings and sequence items; flow
//! mappings (`{a: 1}`) resolve to the line of their parent key.

use super::error::Location;

/// Location of `path` (e.g. `base.optimizer.lr`, `grid.batch_size`, `zip.0.optimizer.lr`)
/// in `text`: the deepest prefix of the path that can be found.
pub(crate) fn locate(text: &str, path: &str) -> Option<Location> {
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut best = None;
    // Search window: [start, end) lines, and the minimum indentation of the parent body.
    let (mut start, mut end, mut min_indent) = (0usize, lines.len(), 0usize);
    let mut i = 0;
    while i < segments.len() {
        let seg = segments[i];
        // A dotted grid axis like `grid.optimizer.lr` is one key `optimizer.lr`: try the
        // longest joined key first.
        let mut found = None;
        for take in (1..=segments.len() - i).rev() {
            let key = segments[i..i + take].join(".");
            if let Some(hit) = find_key(&lines, start, end, min_indent, &key) {
                found = Some((hit, take));
                break;
            }
        }
        if found.is_none() {
            if let Ok(index) = seg.parse::<usize>() {
                if let Some(hit) = find_item(&lines, start, end, min_indent, index) {
                    found = Some((hit, 1));
                }
            }
        }
        let Some(((line, col, indent), take)) = found else {
            // Not a block key: maybe inside a flow mapping on the parent's line.
            if let Some(Location { line, .. }) = best {
                let l: &str = lines[line - 1];
                if let Some(c) = l.find(&format!("{seg}:")) {
                    return Some(Location {
                        line,
                        column: c + 1,
                    });
                }
            }
            break;
        };
        best = Some(Location {
            line: line + 1,
            column: col + 1,
        });
        // The body of this key: following lines indented deeper than the key.
        start = line + 1;
        min_indent = indent + 1;
        end = (start..lines.len())
            .find(|&j| {
                let t = lines[j].trim_start();
                !t.is_empty() && !t.starts_with('#') && indent_of(lines[j]) <= indent
            })
            .unwrap_or(lines.len());
        i += take;
    }
    best
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// (line index, column, indent) of `key:` in lines[start..end] at the shallowest indent.
fn find_key(
    lines: &[&str],
    start: usize,
    end: usize,
    min_indent: usize,
    key: &str,
) -> Option<(usize, usize, usize)> {
    let mut body_indent = None;
    for (j, line) in lines.iter().enumerate().take(end).skip(start) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // A sequence item `- key: v` opens a mapping at the column after "- ".
        let (col, rest) = match trimmed.strip_prefix("- ") {
            Some(r) => (indent_of(line) + 2, r.trim_start()),
            None => (indent_of(line), trimmed),
        };
        if col < min_indent {
            continue;
        }
        let bi = *body_indent.get_or_insert(col);
        if col != bi {
            continue;
        }
        let unquoted = rest.trim_start_matches(['"', '\'']);
        if let Some(after) = unquoted.strip_prefix(key) {
            let after = after.trim_start_matches(['"', '\'']);
            if after.starts_with(':') {
                return Some((j, col, col));
            }
        }
    }
    None
}

/// The `index`-th `- ` item in lines[start..end].
fn find_item(
    lines: &[&str],
    start: usize,
    end: usize,
    min_indent: usize,
    index: usize,
) -> Option<(usize, usize, usize)> {
    let mut n = 0;
    let mut item_indent = None;
    for (j, line) in lines.iter().enumerate().take(end).skip(start) {
        let trimmed = line.trim_start();
        if !trimmed.starts_with("- ") && trimmed != "-" {
            continue;
        }
        let ind = indent_of(line);
        if ind < min_indent.saturating_sub(1) {
            continue;
        }
        if *item_indent.get_or_insert(ind) != ind {
            continue;
        }
        if n == index {
            return Some((j, ind + 2, ind + 1));
        }
        n += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
name: x
base:
  optimizer:
    kind: lars
    lr: -1.0
  head: {kind: linear, out_dim: 3}
grid:
  loss.temperature: [0.1, 0.5]
zip:
  - batch_size: [1, 2]
    optimizer.lr: [0.1, 0.2]
";

    #[test]
    fn finds_nested_keys_dotted_axes_flow_maps_and_list_items() {
        assert_eq!(
            locate(TEXT, "base.optimizer.lr"),
            Some(Location { line: 5, column: 5 })
        );
        assert_eq!(
            locate(TEXT, "grid.loss.temperature"),
            Some(Location { line: 8, column: 3 })
        );
        assert_eq!(locate(TEXT, "base.head.out_dim").map(|l| l.line), Some(6));
        assert_eq!(
            locate(TEXT, "zip.0.optimizer.lr"),
            Some(Location {
                line: 11,
                column: 5
            })
        );
        // Unknown tail: the deepest known prefix.
        assert_eq!(locate(TEXT, "base.optimizer.nope").map(|l| l.line), Some(3));
    }
}
