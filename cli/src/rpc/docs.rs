//! docs/JSONRPC.md documents exactly the methods of [`Request`]: each under a `### \`name\``
//! heading whose first line gives its params (`No params.` or `` `{a, b?}` ``) as the params
//! struct has them, and whose text (or the shapes it refers to) names every member of its answer.

use super::request::{Request, shapes};

const DOC: &str = include_str!("../../../docs/JSONRPC.md");

/// Each documented method's name and text.
fn sections() -> Vec<(&'static str, String)> {
    let mut sections: Vec<(&str, String)> = Vec::new();
    let mut current: Option<(&str, String)> = None;
    for line in DOC.lines() {
        if line.starts_with('#') {
            sections.extend(current.take());
            if let Some(heading) = line.strip_prefix("### `") {
                current = Some((heading.split('`').next().unwrap_or(heading), String::new()));
            }
        } else if let Some((_, text)) = &mut current {
            text.push_str(line);
            text.push('\n');
        }
    }
    sections.extend(current);
    sections
}

/// The params a section's first line gives: `No params.`, or the names in `` `{a, b? (…)}` ``.
fn documented_params(text: &str) -> Vec<String> {
    let text = text.trim_start();
    if text.starts_with("No params") {
        return Vec::new();
    }
    let list = text.strip_prefix("`{").and_then(|t| t.split_once("}`")).map(|(list, _)| list);
    let list = list.unwrap_or_else(|| panic!("the section should start with `No params.` or `{{params}}`: {text}"));
    list.split(',')
        .map(|p| {
            p.trim().trim_start_matches('"').chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        })
        .collect()
}

/// Whether `text` has `word` as a whole word.
fn mentions(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(is_word)
            && !text[at + word.len()..].chars().next().is_some_and(is_word)
    })
}

#[test]
fn every_method_is_documented_with_its_params_and_answer() {
    let sections = sections();
    let documented: Vec<&str> = sections.iter().map(|(name, _)| *name).collect();
    assert_eq!(documented, Request::METHODS, "docs/JSONRPC.md's methods (in order) and Request's differ");
    let shapes_paragraph = DOC.split("Shapes used below").nth(1).and_then(|t| t.split("\n\n").next()).unwrap_or("");
    for ((name, text), (method, params, answer)) in sections.iter().zip(shapes()) {
        assert_eq!(*name, method);
        let mut documented = documented_params(text);
        let mut params: Vec<String> = params.iter().map(|p| p.to_string()).collect();
        documented.sort();
        params.sort();
        assert_eq!(documented, params, "docs/JSONRPC.md's params of {method} differ from the type's");
        for member in answer {
            assert!(
                mentions(text, member) || mentions(shapes_paragraph, member),
                "docs/JSONRPC.md does not say what {method}'s answer member {member:?} is"
            );
        }
    }
}

#[test]
fn the_parser_reads_what_the_docs_write() {
    assert_eq!(documented_params("No params. → [Contact]."), Vec::<String>::new());
    assert_eq!(
        documented_params("`{conversation, limit? (default 50), before?}` → [Message]"),
        ["conversation", "limit", "before"]
    );
    assert!(mentions("{contact, safety_number}", "contact") && !mentions("{contacts}", "contact"));
    // The probe reads through lists and options.
    let log = shapes().into_iter().find(|(method, _, _)| *method == "log").unwrap();
    assert_eq!(log.1, ["conversation", "limit", "before"]);
    assert!(log.2.contains(&"lamport"), "{:?}", log.2);
}
