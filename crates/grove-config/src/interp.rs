//! `${...}` interpolation: variables resolved at load time, references kept for the Plan.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// What `${SERVICE.attr}` asks of another service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceAttr {
    /// `${db.url}`: a URL for the service (scheme by recipe, `http://` otherwise).
    Url,
    /// `${db.host}`: the address it binds.
    Host,
    /// `${db.port}`: its port.
    Port,
}

impl ServiceAttr {
    /// The names valid after the dot.
    pub const NAMES: [&'static str; 3] = ["url", "host", "port"];

    fn parse(s: &str) -> Option<Self> {
        match s {
            "url" => Some(ServiceAttr::Url),
            "host" => Some(ServiceAttr::Host),
            "port" => Some(ServiceAttr::Port),
            _ => None,
        }
    }

    /// The name after the dot.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceAttr::Url => "url",
            ServiceAttr::Host => "host",
            ServiceAttr::Port => "port",
        }
    }
}

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    /// Text, already free of `$$` escapes and variables.
    Lit(String),
    /// `${PORT}`.
    Port,
    /// `${HOST}`.
    Host,
    /// `${instance}`.
    Instance,
    /// `${instance.KEY}`.
    InstanceVar(String),
    /// `${SERVICE.attr}`.
    Service(String, ServiceAttr),
}

/// A string whose variables are resolved and whose unit references wait for the Plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Template {
    /// The pieces, adjacent literals joined.
    pub parts: Vec<Part>,
}

impl Template {
    /// A template of plain text.
    pub fn literal(s: impl Into<String>) -> Self {
        Template {
            parts: vec![Part::Lit(s.into())],
        }
    }

    /// The text, when there is no reference left in it.
    pub fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                _ => return None,
            }
        }
        Some(out)
    }

    /// Whether any part refers to the unit's instance.
    pub fn uses_instance(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Instance | Part::InstanceVar(_)))
    }

    /// Whether the template refers to `${PORT}`.
    pub fn uses_port(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Port))
    }

    /// Renders the template with `resolve` answering each reference.
    pub fn render<E>(
        &self,
        mut resolve: impl FnMut(&Part) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                other => out.push_str(&resolve(other)?),
            }
        }
        Ok(out)
    }

    fn push_lit(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if let Some(Part::Lit(last)) = self.parts.last_mut() {
            last.push_str(s);
        } else {
            self.parts.push(Part::Lit(s.to_string()));
        }
    }
}

impl fmt::Display for Template {
    /// The template as it could be written again (`$` escaped, references as `${...}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Lit(s) => write!(f, "{}", s.replace('$', "$$"))?,
                Part::Port => write!(f, "${{PORT}}")?,
                Part::Host => write!(f, "${{HOST}}")?,
                Part::Instance => write!(f, "${{instance}}")?,
                Part::InstanceVar(k) => write!(f, "${{instance.{k}}}")?,
                Part::Service(s, a) => write!(f, "${{{s}.{}}}", a.as_str())?,
            }
        }
        Ok(())
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpError {
    /// `${` without its `}`.
    Unterminated,
    /// `${}` or a name with characters a variable cannot have.
    BadName(String),
    /// `${VAR:?message}` with VAR unset or empty.
    Required {
        /// The variable.
        var: String,
        /// The author's message.
        message: String,
    },
    /// `${x.y}` where y is not url, host or port.
    BadAttr(String, String),
    /// A lone `$` followed by something other than `{` or `$`.
    LoneDollar,
}

impl fmt::Display for InterpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterpError::Unterminated => write!(f, "`${{` is not closed with `}}`"),
            InterpError::BadName(n) => write!(f, "`${{{n}}}` is not a valid variable name"),
            InterpError::Required { var, message } => {
                write!(f, "required variable {var} is not set: {message}")
            }
            InterpError::BadAttr(s, a) => write!(
                f,
                "`${{{s}.{a}}}`: a service reference ends in .url, .host or .port, not .{a}"
            ),
            InterpError::LoneDollar => {
                write!(
                    f,
                    "a `$` must start `${{NAME}}`; write `$$` for a literal `$`"
                )
            }
        }
    }
}

/// The outcome of interpolating one string.
#[derive(Debug, Clone, Default)]
pub struct Interpolated {
    /// The template (empty on error).
    pub template: Template,
    /// Variables that were used but unset (they became empty strings).
    pub unset: Vec<String>,
    /// Variables that were set and referenced (a value built from a secret is a secret).
    pub used: Vec<String>,
}

fn valid_var(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_ident(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Interpolates `s`: `$$`, `${VAR}`, `${VAR:-default}`, `${VAR:?message}` from `vars`;
/// `${PORT}`, `${HOST}`, `${instance}`, `${instance.KEY}` and `${SERVICE.attr}` stay as references.
pub fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> Result<Interpolated, InterpError> {
    let mut out = Interpolated::default();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.template.push_lit(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.template.push_lit("$");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            return Err(InterpError::LoneDollar);
        };
        let close = find_close(body_start).ok_or(InterpError::Unterminated)?;
        let body = &body_start[..close];
        rest = &body_start[close + 1..];
        expand(body, vars, &mut out)?;
    }
    out.template.push_lit(rest);
    Ok(out)
}

/// The index of the `}` closing a `${`, allowing nested `${...}` in defaults.
fn find_close(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn expand(
    body: &str,
    vars: &BTreeMap<String, String>,
    out: &mut Interpolated,
) -> Result<(), InterpError> {
    let (name, op) = match body.find(':') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if op.is_none() {
        match name {
            "PORT" => return push(out, Part::Port),
            "HOST" => return push(out, Part::Host),
            "instance" => return push(out, Part::Instance),
            _ => {}
        }
        if let Some((head, tail)) = name.split_once('.') {
            if head == "instance" {
                if !valid_ident(tail) {
                    return Err(InterpError::BadName(name.to_string()));
                }
                return push(out, Part::InstanceVar(tail.to_string()));
            }
            if !valid_ident(head) {
                return Err(InterpError::BadName(name.to_string()));
            }
            let attr = ServiceAttr::parse(tail)
                .ok_or_else(|| InterpError::BadAttr(head.to_string(), tail.to_string()))?;
            return push(out, Part::Service(head.to_string(), attr));
        }
    }
    if !valid_var(name) {
        return Err(InterpError::BadName(body.to_string()));
    }
    let value = vars.get(name).filter(|v| !v.is_empty());
    if vars.contains_key(name) {
        out.used.push(name.to_string());
    }
    match op {
        None => match vars.get(name) {
            Some(v) => out.template.push_lit(v),
            None => out.unset.push(name.to_string()),
        },
        Some(op) => {
            if let Some(default) = op.strip_prefix('-') {
                match value {
                    Some(v) => out.template.push_lit(v),
                    None => {
                        let inner = interpolate(default, vars)?;
                        out.unset.extend(inner.unset);
                        out.used.extend(inner.used);
                        for p in inner.template.parts {
                            match p {
                                Part::Lit(s) => out.template.push_lit(&s),
                                other => out.template.parts.push(other),
                            }
                        }
                    }
                }
            } else if let Some(message) = op.strip_prefix('?') {
                match value {
                    Some(v) => out.template.push_lit(v),
                    None => {
                        let message = if message.is_empty() {
                            "it must be set in the environment or the .env file".to_string()
                        } else {
                            message.to_string()
                        };
                        return Err(InterpError::Required {
                            var: name.to_string(),
                            message,
                        });
                    }
                }
            } else {
                return Err(InterpError::BadName(body.to_string()));
            }
        }
    }
    Ok(())
}

fn push(out: &mut Interpolated, part: Part) -> Result<(), InterpError> {
    out.template.parts.push(part);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn lit(s: &str, v: &BTreeMap<String, String>) -> String {
        interpolate(s, v).unwrap().template.as_literal().unwrap()
    }

    #[test]
    fn variables_defaults_and_escapes() {
        let v = vars(&[("A", "1"), ("EMPTY", "")]);
        assert_eq!(lit("x${A}y", &v), "x1y");
        assert_eq!(lit("${B:-two}", &v), "two");
        assert_eq!(lit("${EMPTY:-d}", &v), "d");
        assert_eq!(lit("${EMPTY}", &v), "");
        assert_eq!(lit("$$HOME and $${A}", &v), "$HOME and ${A}");
        assert_eq!(lit("${B:-${A}}", &v), "1");
        assert_eq!(lit("${B:-}", &v), "");
        assert_eq!(lit("no dollars", &v), "no dollars");
    }

    #[test]
    fn unset_variables_are_empty_and_reported() {
        let out = interpolate("a${NOPE}b", &vars(&[])).unwrap();
        assert_eq!(out.template.as_literal().unwrap(), "ab");
        assert_eq!(out.unset, vec!["NOPE".to_string()]);
    }

    #[test]
    fn required_variables_carry_their_message() {
        let err = interpolate("${KEY:?set KEY in .env}", &vars(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "required variable KEY is not set: set KEY in .env"
        );
        assert!(interpolate("${KEY:?}", &vars(&[("KEY", "")])).is_err());
        assert_eq!(lit("${KEY:?m}", &vars(&[("KEY", "k")])), "k");
    }

    #[test]
    fn references_stay_for_the_plan() {
        let t = interpolate(
            "http://${HOST}:${PORT}/${instance}/${instance.cur}/${db.url}",
            &vars(&[]),
        )
        .unwrap()
        .template;
        assert_eq!(
            t.parts,
            vec![
                Part::Lit("http://".into()),
                Part::Host,
                Part::Lit(":".into()),
                Part::Port,
                Part::Lit("/".into()),
                Part::Instance,
                Part::Lit("/".into()),
                Part::InstanceVar("cur".into()),
                Part::Lit("/".into()),
                Part::Service("db".into(), ServiceAttr::Url),
            ]
        );
        assert_eq!(
            t.to_string(),
            "http://${HOST}:${PORT}/${instance}/${instance.cur}/${db.url}"
        );
    }

    #[test]
    fn malformed_expressions_are_errors() {
        let v = vars(&[]);
        assert_eq!(
            interpolate("${A", &v).unwrap_err(),
            InterpError::Unterminated
        );
        assert_eq!(
            interpolate("${}", &v).unwrap_err(),
            InterpError::BadName(String::new())
        );
        assert_eq!(interpolate("$A", &v).unwrap_err(), InterpError::LoneDollar);
        assert_eq!(
            interpolate("trailing $", &v).unwrap_err(),
            InterpError::LoneDollar
        );
        assert_eq!(
            interpolate("${db.uri}", &v).unwrap_err(),
            InterpError::BadAttr("db".into(), "uri".into())
        );
        assert!(matches!(
            interpolate("${A:+x}", &v),
            Err(InterpError::BadName(_))
        ));
        assert!(matches!(
            interpolate("${1A}", &v),
            Err(InterpError::BadName(_))
        ));
    }

    #[test]
    fn literal_dollars_survive_display() {
        let t = interpolate("cost $$5", &vars(&[])).unwrap().template;
        assert_eq!(t.to_string(), "cost $$5");
    }
}
