//! Helpers shared by the loader's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use grove_config::{load, LoadOptions, Loaded};

/// A folder with a stack file (and optional siblings) in it.
#[derive(Debug)]
pub struct Dir {
    pub dir: tempfile::TempDir,
}

impl Dir {
    pub fn new(stack: &str) -> Dir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("grove.toml"), stack).unwrap();
        Dir { dir }
    }

    pub fn file(self, name: &str, text: &str) -> Dir {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        self
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("grove.toml")
    }

    pub fn load(&self, env: Option<&str>, vars: &[(&str, &str)]) -> Result<Loaded, Vec<String>> {
        self.load_with(env, vars, &[])
    }

    /// As `load`, with `--set` values.
    pub fn load_with(
        &self,
        env: Option<&str>,
        vars: &[(&str, &str)],
        sets: &[&str],
    ) -> Result<Loaded, Vec<String>> {
        let opts = LoadOptions {
            sets: sets.iter().map(|s| s.to_string()).collect(),
            environment: env.map(String::from),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            scales: Vec::new(),
        };
        let root = format!("{}/", self.dir.path().display());
        load(&self.path(), &opts).map_err(|e| {
            e.errors
                .iter()
                .map(|e| e.to_string().replace(&root, ""))
                .collect()
        })
    }
}

/// Errors of a stack, as `file:line:col: key: message` with the temp folder removed.
pub fn errors(stack: &str) -> Vec<String> {
    match Dir::new(stack).load(None, &[]) {
        Ok(_) => Vec::new(),
        Err(e) => e,
    }
}

/// Loads a stack that must be valid.
pub fn ok(stack: &str) -> Loaded {
    match Dir::new(stack).load(None, &[]) {
        Ok(l) => l,
        Err(e) => panic!("expected a valid stack, got:\n{}", e.join("\n")),
    }
}
