//! `.env` files: `KEY=VALUE` lines as docker compose reads them.

/// One parsed line: key, value, byte offset of the line.
pub type EnvLine = (String, String, usize);

/// Parses a `.env` file. Errors carry the byte offset of the bad line.
pub fn parse(text: &str) -> Result<Vec<EnvLine>, (usize, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((line_start, format!("expected KEY=VALUE, found `{line}`")));
        };
        let key = key.trim();
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid {
            return Err((line_start, format!("`{key}` is not a valid variable name")));
        }
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('"') {
            let Some(end) = inner.rfind('"') else {
                return Err((line_start, format!("unclosed double quote in `{key}`")));
            };
            unescape(&inner[..end])
        } else if let Some(inner) = value.strip_prefix('\'') {
            let Some(end) = inner.rfind('\'') else {
                return Err((line_start, format!("unclosed single quote in `{key}`")));
            };
            inner[..end].to_string()
        } else {
            match value.find(" #") {
                Some(i) => value[..i].trim_end().to_string(),
                None => value.to_string(),
            }
        };
        out.push((key.to_string(), value, line_start));
    }
    Ok(out)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect()
    }

    #[test]
    fn forms() {
        let got = kv("# c\nA=1\nexport B = two \nC=\"x\\ny\"\nD='$raw'\nE=v # note\n\nF=\n");
        let want: Vec<(String, String)> = [
            ("A", "1"),
            ("B", "two"),
            ("C", "x\ny"),
            ("D", "$raw"),
            ("E", "v"),
            ("F", ""),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_lines_name_their_offset() {
        assert_eq!(parse("A=1\nnonsense\n").unwrap_err().0, 4);
        assert!(parse("1A=1").is_err());
        assert!(parse("A=\"open").is_err());
    }
}
