//! YAML front matter of Markdown items (`---` lines around a YAML mapping at the top of the file).

use serde_yaml::{Mapping, Value};

/// The front matter mapping, `Ok(None)` when the text has none, or the YAML error.
pub fn parse(text: &str) -> Result<Option<Mapping>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    match lines.next() {
        Some(first) if first.trim_end() == "---" => {}
        _ => return Ok(None),
    }
    let mut yaml = String::new();
    for line in lines {
        if line.trim_end() == "---" {
            return match serde_yaml::from_str::<Value>(&yaml) {
                Ok(Value::Mapping(m)) => Ok(Some(m)),
                Ok(Value::Null) => Ok(Some(Mapping::new())),
                Ok(_) => Err("front matter is not a YAML mapping".into()),
                Err(e) => Err(format!("front matter is not valid YAML: {e}")),
            };
        }
        yaml.push_str(line);
    }
    Err("front matter opened with --- is never closed".into())
}

/// The text after the front matter (all of it when there is none).
pub fn body(text: &str) -> &str {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        offset += line.len();
        if line.trim_end() == "---" {
            if i == 0 {
                continue;
            }
            return &text[offset..];
        }
        if i == 0 {
            return text;
        }
    }
    text
}

pub fn string_field(m: &Mapping, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_front_matter() {
        let m = parse("---\nname: a\ndescription: b\r\n---\nbody")
            .unwrap()
            .unwrap();
        assert_eq!(string_field(&m, "name").as_deref(), Some("a"));
        assert_eq!(string_field(&m, "description").as_deref(), Some("b"));
        assert!(parse("no front matter").unwrap().is_none());
        assert!(parse("---\nname: [unclosed\n---\n").is_err());
        assert!(parse("---\nname: a\n").is_err());
        assert!(parse("---\n- a list\n---\n").is_err());
        assert_eq!(body("---\nname: a\n---\nthe body\n"), "the body\n");
        assert_eq!(body("no front matter\n---\n"), "no front matter\n---\n");
    }
}
