//! Errors and warnings about what a user wrote, as `miette` diagnostics with file, line and column.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use crate::source::{Loc, Sources};

/// One problem in a stack file (or an overlay, or a `.env` file).
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The dotted key the problem is about (`services.web.port`); empty for syntax errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What would be valid, when there is something useful to say.
    pub help: Option<String>,
    span: std::ops::Range<usize>,
    text: Option<Arc<str>>,
}

impl ConfigError {
    /// An error at `loc` about `key`.
    pub fn at(
        sources: &Sources,
        loc: &Loc,
        key: &str,
        message: String,
        help: Option<String>,
    ) -> Self {
        let (line, column) = sources.line_col(loc.file, loc.span.start);
        let file = sources.get(loc.file);
        ConfigError {
            file: file.map(|f| f.path.clone()).unwrap_or_default(),
            line,
            column,
            key: key.to_string(),
            message,
            help,
            span: loc.span.clone(),
            text: file.map(|f| f.text.clone()),
        }
    }

    /// An error about a file as a whole (it cannot be read, say).
    pub fn file(path: PathBuf, message: String) -> Self {
        ConfigError {
            file: path,
            line: 1,
            column: 1,
            key: String::new(),
            message,
            help: None,
            span: 0..0,
            text: None,
        }
    }

    /// `file:line:column`.
    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location())?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Diagnostic for ConfigError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("grove::config"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.text.as_ref().map(|t| t as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.text.as_ref()?;
        let len = self.span.end.saturating_sub(self.span.start);
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some("here".to_string()),
            self.span.start,
            len,
        ))))
    }
}

/// Every error found in one load, reported together.
#[derive(Debug, Clone, Default, thiserror::Error)]
#[error("{} error{} in the stack file", .errors.len(), if .errors.len() == 1 { "" } else { "s" })]
pub struct ConfigErrors {
    /// The errors, in file order.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Renders every error as a miette report with its source snippet (for terminals).
    pub fn render(&self, color: bool) -> String {
        let handler = if color {
            miette::GraphicalReportHandler::new()
        } else {
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        };
        let mut out = String::new();
        for e in &self.errors {
            let source = e
                .text
                .as_ref()
                .map(|t| NamedSource::new(e.file.display().to_string(), t.to_string()));
            let named = NamedErr(e, source);
            if handler.render_report(&mut out, &named).is_err() {
                out.push_str(&e.to_string());
                out.push('\n');
            }
        }
        out
    }
}

/// A [`ConfigError`] whose snippet carries the file name.
struct NamedErr<'a>(&'a ConfigError, Option<NamedSource<String>>);

impl fmt::Debug for NamedErr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}
impl fmt::Display for NamedErr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.key.is_empty() {
            write!(f, "{}", self.0.message)
        } else {
            write!(f, "{}: {}", self.0.key, self.0.message)
        }
    }
}
impl std::error::Error for NamedErr<'_> {}
impl Diagnostic for NamedErr<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.0.location()))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.help()
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.1.as_ref().map(|s| s as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.0.labels()
    }
}

/// A warning: the file is valid, but something is probably not what the user meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `file:line:column`.
    pub location: String,
    /// What looks wrong.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.location, self.message)
    }
}

/// The nearest of `valid` to `given`, when it is near enough to be a likely typo.
pub fn suggest<'a>(given: &str, valid: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    valid
        .into_iter()
        .map(|v| (strsim::damerau_levenshtein(given, v), v))
        .filter(|(d, v)| *d < given.chars().count() && *d <= 1.max(v.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// `a`, `b` or `c`: a list for messages.
pub fn one_of<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("`{}`", s.as_ref())).collect();
    match quoted.len() {
        0 => "nothing".to_string(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}
