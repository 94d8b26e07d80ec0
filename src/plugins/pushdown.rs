//! Pushing a segment's simple conditions down to SQL. An inline expression that is a
//! chain of `&&` may hold conditions the database can test itself (country, status, a tag,
//! a list); they become SQL filters, and only the rest is evaluated in Rhai, on the rows
//! that pass them.

pub use crate::domain::segment::SqlConditions;

/// Splits an inline expression into what SQL can test and the expression left for Rhai
/// (`None` when nothing is left). A script it does not understand is left whole.
pub fn split(source: &str) -> (SqlConditions, Option<String>) {
    let whole = (SqlConditions::default(), Some(source.to_owned()));
    let Some(conjuncts) = top_level_conjuncts(source) else {
        return whole;
    };
    let mut conditions = SqlConditions::default();
    let mut rest = Vec::new();
    for conjunct in conjuncts {
        let conjunct = conjunct.trim();
        if let Some(value) = equality(conjunct, "contact.country") {
            conditions.countries.push(value);
        } else if let Some(value) = equality(conjunct, "contact.status") {
            conditions.statuses.push(value);
        } else if let Some(value) = call(conjunct, "contact.has_tag") {
            conditions.tags.push(value.to_lowercase());
        } else if let Some(value) = call(conjunct, "contact.in_list") {
            conditions.lists.push(value);
        } else {
            rest.push(conjunct.to_owned());
        }
    }
    if conditions.is_empty() {
        return whole;
    }
    (conditions, (!rest.is_empty()).then(|| rest.join(" && ")))
}

/// The parts of `a && b && c`, or `None` when the expression is anything else at its
/// top level (statements, `||`, comments, functions).
fn top_level_conjuncts(source: &str) -> Option<Vec<&str>> {
    let trimmed = source.trim();
    // One line only, so that an error in what is left keeps its line and column.
    if trimmed.is_empty()
        || trimmed.contains(['\n', '\r'])
        || trimmed.contains("fn ")
        || trimmed.contains("//")
        || trimmed.contains("/*")
    {
        return None;
    }
    let bytes = trimmed.as_bytes();
    let (mut depth, mut in_string, mut start, mut parts) = (0i32, false, 0, Vec::new());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'`' | b';' | b'{' | b'}' => return None,
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b'|' if depth == 0 && bytes.get(i + 1) == Some(&b'|') => return None,
                b'&' if depth == 0 && bytes.get(i + 1) == Some(&b'&') => {
                    parts.push(&trimmed[start..i]);
                    start = i + 2;
                    i += 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    if in_string || depth != 0 {
        return None;
    }
    parts.push(&trimmed[start..]);
    Some(parts)
}

/// `field == "x"` or `"x" == field`.
fn equality(conjunct: &str, field: &str) -> Option<String> {
    let (left, right) = conjunct.split_once("==")?;
    let (left, right) = (left.trim(), right.trim());
    if left == field {
        literal(right)
    } else if right == field {
        literal(left)
    } else {
        None
    }
}

/// `method("x")`.
fn call(conjunct: &str, method: &str) -> Option<String> {
    let inner = conjunct.strip_prefix(method)?.trim().strip_prefix('(')?.strip_suffix(')')?;
    literal(inner.trim())
}

/// A plain double-quoted string with nothing to unescape.
fn literal(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['"', '\\', '$'])).then(|| inner.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_simple_conditions_and_keeps_the_rest() {
        let (sql, rest) = split(r#"contact.country == "FR" && contact.has_tag("VIP") && contact.attr("orders") >= 10"#);
        assert_eq!(sql.countries, ["FR"]);
        assert_eq!(sql.tags, ["vip"]);
        assert_eq!(rest.as_deref(), Some(r#"contact.attr("orders") >= 10"#));
        let (sql, rest) = split(r#""active" == contact.status && contact.in_list("l1")"#);
        assert_eq!((sql.statuses, sql.lists, rest), (vec!["active".to_owned()], vec!["l1".to_owned()], None));
    }

    #[test]
    fn leaves_whole_what_it_does_not_understand() {
        for script in [
            r#"contact.country == "FR" || contact.has_tag("vip")"#,
            r#"fn matches(contact) { contact.country == "FR" }"#,
            r#"let x = 1; contact.country == "FR""#,
            r#"contact.country == "F\"R""#,
            r#"(contact.country == "FR" && contact.has_tag("a")) || true"#,
            r#"contact.country != "FR""#,
        ] {
            let (sql, rest) = split(script);
            assert!(sql.is_empty(), "{script}");
            assert_eq!(rest.as_deref(), Some(script));
        }
    }
}
