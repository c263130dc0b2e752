//! Grid cell coordinates as text: how plans, status tables, report tables and legends name
//! the value of an axis at a grid point.

use serde_json::Value;

/// How a list value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lists {
    /// `[crop,color]`: one word, for whitespace-separated terminal tables.
    Bracketed,
    /// `crop, color`: for report tables and legends.
    CommaSpaced,
}

/// A cell value as text: strings bare, mappings `k=v k=v` without nulls, lists as `lists`
/// says, anything else as JSON.
pub fn value_text(v: &Value, lists: Lists) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(|x| value_text(x, lists)).collect();
            match lists {
                Lists::Bracketed => format!("[{}]", items.join(",")),
                Lists::CommaSpaced => items.join(", "),
            }
        }
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={}", value_text(v, lists)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_read_as_one_word_in_plans_and_as_prose_in_reports() {
        let ops = json!(["crop", "color"]);
        assert_eq!(value_text(&ops, Lists::Bracketed), "[crop,color]");
        assert_eq!(value_text(&ops, Lists::CommaSpaced), "crop, color");
        let head = json!({"kind": "nonlinear", "out_dim": 128, "hidden": null});
        assert_eq!(
            value_text(&head, Lists::Bracketed),
            "kind=nonlinear out_dim=128"
        );
        assert_eq!(value_text(&json!(0.5), Lists::CommaSpaced), "0.5");
    }
}
