//! Single values set from outside the file: `--set KEY=VALUE` on the command line and
//! `GROVE_SET_KEY=VALUE` in the environment (`__` for each dot: `GROVE_SET_edge__tls=off`).
//! Each is a dotted path into the stack file and a value, typed as TOML reads it (`3`,
//! `true`, `["a", "b"]`, `{ a = 1 }`; anything else is a string), applied over the file and
//! its environments as one more overlay, and validated like the file.

use std::collections::BTreeMap;

use serde::Serialize;

/// The prefix of the environment variables that set a value.
pub const ENV_PREFIX: &str = "GROVE_SET_";

/// Where the command line's `--set` values travel to the processes grove starts (the daemon,
/// a successor), one per line: never on their command lines.
pub const CLI_SETS_VAR: &str = "GROVE_CLI_SETS";

/// Checks `--set` values before anything else runs: `Err` says what is wrong with the first
/// bad one.
pub fn check_sets(sets: &[String]) -> Result<(), String> {
    if let Some(s) = sets.iter().find(|s| s.contains('\n')) {
        return Err(format!(
            "--set `{}`: a value cannot span lines",
            s.lines().next().unwrap_or_default()
        ));
    }
    match collect(&BTreeMap::new(), sets, &[]) {
        Ok(_) => Ok(()),
        Err(refused) => Err(refused
            .iter()
            .map(|r| format!("--set `{}`: {}", r.given, r.message))
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

/// A value set from outside the file, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    /// The dotted path (`edge.tls`, `services.web.replicas`).
    pub path: String,
    /// The value as TOML (`"off"`, `3`).
    pub value: String,
    /// `--set` or the variable's name.
    pub origin: String,
}

/// Why an override was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What was given.
    pub given: String,
    /// Why it is refused, and what would do.
    pub message: String,
}

/// The overrides of `vars` (the process environment, in name order) then of `sets` (the
/// command line, in order); a path set twice keeps its later value.
pub fn collect(
    vars: &BTreeMap<String, String>,
    sets: &[String],
    scales: &[(String, u32)],
) -> Result<Vec<Override>, Vec<Refused>> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path = rest.split("__").collect::<Vec<_>>().join(".");
        match one(&path, value, name, false) {
            Ok(o) => out.push(o),
            Err(message) => refused.push(Refused {
                given: format!("{name}={value}"),
                message,
            }),
        }
    }
    for given in sets {
        let parsed = match given.split_once('=') {
            Some((path, value)) => one(path.trim(), value, "--set", true),
            None => Err("expected KEY=VALUE, such as --set edge.tls=off".to_string()),
        };
        match parsed {
            Ok(o) => out.push(o),
            Err(message) => refused.push(Refused {
                given: given.clone(),
                message,
            }),
        }
    }
    for (service, n) in scales {
        match one(
            &format!("services.{service}.replicas"),
            &n.to_string(),
            "grove scale",
            false,
        ) {
            Ok(o) => out.push(o),
            Err(message) => refused.push(Refused {
                given: format!("{service}={n}"),
                message,
            }),
        }
    }
    if refused.is_empty() {
        // A path set twice takes the later value (the command line over the environment).
        let mut kept: Vec<Override> = Vec::new();
        for o in out.into_iter().rev() {
            if !kept.iter().any(|k| k.path == o.path) {
                kept.push(o);
            }
        }
        kept.reverse();
        Ok(kept)
    } else {
        Err(refused)
    }
}

/// One override, its path checked and its value typed.
fn one(path: &str, value: &str, origin: &str, on_command_line: bool) -> Result<Override, String> {
    let segments: Vec<&str> = path.split('.').collect();
    let bare = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if segments.iter().any(|s| !bare(s)) {
        return Err(format!(
            "`{path}` is not a dotted path of keys (letters, digits, `_` and `-`, joined by `.`)"
        ));
    }
    if on_command_line && segments.last().is_some_and(|k| crate::is_secret_name(k)) {
        return Err(format!(
            "`{path}` names a secret, and the command line is readable by anyone on this \
             machine in `ps`; set {ENV_PREFIX}{} in the environment instead",
            segments.join("__")
        ));
    }
    Ok(Override {
        path: path.to_string(),
        value: typed(value),
        origin: origin.to_string(),
    })
}

/// `value` as TOML: itself when TOML reads it as a value, else as a string.
fn typed(value: &str) -> String {
    let v = value.trim();
    if !v.is_empty() && format!("x = {v}").parse::<toml_edit::DocumentMut>().is_ok() {
        return v.to_string();
    }
    toml_edit::Value::from(value).to_string().trim().to_string()
}

/// The overrides as one TOML overlay, a line each.
pub fn as_toml(overrides: &[Override]) -> String {
    overrides
        .iter()
        .map(|o| format!("{} = {}\n", o.path, o.value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_are_typed_as_toml_reads_them_else_strings() {
        let got = collect(
            &BTreeMap::new(),
            &sets(&[
                "edge.tls=off",
                "services.web.replicas=3",
                "edge.hsts=true",
                "edge.listen=[\"https://0.0.0.0:443\"]",
                "edge.acme_email=ops@example.org",
                "services.web.env.GREETING=say \"hi\"",
            ]),
            &[],
        )
        .unwrap();
        let values: Vec<&str> = got.iter().map(|o| o.value.as_str()).collect();
        assert_eq!(
            values,
            [
                "\"off\"",
                "3",
                "true",
                "[\"https://0.0.0.0:443\"]",
                "\"ops@example.org\"",
                "'say \"hi\"'",
            ]
        );
        assert!(got.iter().all(|o| o.origin == "--set"));
    }

    #[test]
    fn the_environment_names_its_dots_with_double_underscores_and_comes_first() {
        let vars: BTreeMap<String, String> = [
            ("GROVE_SET_edge__tls".to_string(), "acme".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ]
        .into();
        let got = collect(&vars, &[], &[]).unwrap();
        assert_eq!(got[0].path, "edge.tls");
        assert_eq!(got[0].origin, "GROVE_SET_edge__tls");
        // The command line wins over the environment; each path once.
        let got = collect(&vars, &sets(&["edge.tls=off", "edge.hsts=true"]), &[]).unwrap();
        assert_eq!(as_toml(&got), "edge.tls = \"off\"\nedge.hsts = true\n");
        assert_eq!(got[0].origin, "--set");
    }

    #[test]
    fn bad_paths_missing_values_and_secrets_on_the_command_line_are_refused() {
        let err = collect(
            &BTreeMap::new(),
            &sets(&[
                "edge.tls",
                "services..web=1",
                "services.web.env.SECRET_KEY=abc",
            ]),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.len(), 3);
        assert!(err[0].message.contains("expected KEY=VALUE"), "{err:?}");
        assert!(err[1].message.contains("not a dotted path"), "{err:?}");
        assert!(
            err[2]
                .message
                .contains("GROVE_SET_services__web__env__SECRET_KEY"),
            "{err:?}"
        );
        // Through the environment, a secret is fine.
        let vars: BTreeMap<String, String> = [(
            "GROVE_SET_services__web__env__SECRET_KEY".into(),
            "abc".into(),
        )]
        .into();
        assert!(collect(&vars, &[], &[]).is_ok());
        // `grove scale` comes last and says so.
        let got = collect(
            &BTreeMap::new(),
            &sets(&["services.web.replicas=2"]),
            &[("web".into(), 4)],
        )
        .unwrap();
        assert_eq!(
            (got[0].value.as_str(), got[0].origin.as_str()),
            ("4", "grove scale")
        );
    }
}
