//! # grove-export: the same stack on Kubernetes or docker compose
//!
//! Owns the translation of a [`grove_plan::Plan`] into Kubernetes manifests ([`kubernetes`],
//! built from typed `k8s-openapi` objects, one YAML document each, in a stable order, each
//! under a comment naming the stack service it comes from) and into a `compose.yaml`
//! ([`compose`]). The mapping is documented in `docs/export.md`.
//!
//! It must not know files, processes, the engine or TOML: it is pure, a reader of the Plan
//! like the supervisor and the edge. Secret values never reach the output unless the caller
//! asks with [`Options::include_secrets`]; otherwise Secrets are emitted empty, with the
//! command that fills them.

#![forbid(unsafe_code)]

mod compose;
mod k8s;
mod model;

pub use compose::compose;
pub use k8s::kubernetes;

/// What an export may not do without.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Command services without `image`.
    #[error(
        "every service that runs a command needs `image = \"...\"` to be exported; missing for: {}",
        .0.join(", ")
    )]
    MissingImages(Vec<String>),
    /// YAML rendering failed (a bug).
    #[error("cannot render YAML: {0}")]
    Yaml(String),
}

/// Export settings.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Write secret values (user secrets and generated passwords) into the output.
    pub include_secrets: bool,
}

/// One output document: a comment saying where it comes from, and its YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The comment above it (without `# `), one line per entry.
    pub comment: Vec<String>,
    /// The YAML body.
    pub yaml: String,
    /// `Kind/name`, for file names and listings.
    pub id: String,
}

/// Joins documents into one multi-document YAML stream.
pub fn to_stream(header: &[String], docs: &[Document]) -> String {
    let mut out = String::new();
    for h in header {
        out.push_str(&format!("# {h}\n"));
    }
    for d in docs {
        out.push_str("---\n");
        for c in &d.comment {
            out.push_str(&format!("# {c}\n"));
        }
        out.push_str(&d.yaml);
        if !d.yaml.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

pub(crate) fn yaml<T: serde::Serialize>(v: &T) -> Result<String, ExportError> {
    serde_yaml::to_string(v).map_err(|e| ExportError::Yaml(e.to_string()))
}
