//! Reading the stack file, its `.env`, and its environment overlays, then building the Stack.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::build::Builder;
use crate::error::{one_of, ConfigError, ConfigErrors, Warning};
use crate::node::{self, Entry, Kind, Node};
use crate::source::{FileId, Loc, Sources};
use crate::stack::Stack;

/// What to load and with which variables.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The environment overlay to apply (`--env`), if any.
    pub environment: Option<String>,
    /// The process environment; it wins over the `.env` file. Its `GROVE_SET_...`
    /// variables set single values.
    pub vars: BTreeMap<String, String>,
    /// `--set KEY=VALUE`, in order: single values over the file and its environments.
    pub sets: Vec<String>,
    /// Replica counts `grove scale` set (service, count), over everything else.
    pub scales: Vec<(String, u32)>,
}

impl LoadOptions {
    /// Options with the current process's environment.
    pub fn from_process(environment: Option<String>) -> Self {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        let sets = vars
            .get(crate::overrides::CLI_SETS_VAR)
            .map(|v| v.lines().map(str::to_string).collect())
            .unwrap_or_default();
        LoadOptions {
            environment,
            vars,
            sets,
            scales: Vec::new(),
        }
    }

    /// The same, with `--set` values.
    pub fn with_sets(mut self, sets: Vec<String>) -> Self {
        self.sets = sets;
        self
    }
}

/// A loaded stack and what was noticed on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated stack.
    pub stack: Stack,
    /// Warnings (unset variables and the like).
    pub warnings: Vec<Warning>,
}

/// Loads and validates the stack file at `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![ConfigError::file(
            path.to_path_buf(),
            format!("cannot read the stack file: {e}"),
        )],
    })?;
    load_str(path, &text, opts)
}

/// Loads a stack from `text` as if read from `path` (overlays and `.env` are looked up beside it).
pub fn load_str(path: &Path, text: &str, opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let mut sources = Sources::default();
    let root_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    // Absolute, so paths built from it (a CA file named in a URL, say) mean the same in a
    // unit's own folder.
    let root_dir = std::path::absolute(&root_dir).unwrap_or(root_dir);
    let main = sources.add(path, text);
    let mut base = parse(&sources, main, text).map_err(|e| ConfigErrors { errors: vec![*e] })?;

    // Environments: inline tables and sibling files.
    let inline = take_environments(&mut base);
    let (known, overlay_files) = environments(path, &inline, &mut sources)?;
    // `--set` and `GROVE_SET_...`: one more overlay, over the selected environments.
    let (overrides, set_overlay) = set_overlay(opts, &mut sources)?;
    // `--env appserver,split`: overlays applied in order, each an environment of its own.
    let selected: Vec<String> = opts
        .environment
        .iter()
        .flat_map(|e| e.split(','))
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    for env in &selected {
        if !known.contains(env) {
            let loc = inline
                .as_ref()
                .map(|n| n.loc.clone())
                .unwrap_or(Loc::new(main, 0..0));
            let help = if known.is_empty() {
                "this stack defines no environments; add [environments.NAME] or a grove.NAME.toml file"
                    .to_string()
            } else {
                format!("known environments: {}", one_of(&known))
            };
            let e = ConfigError::at(
                &sources,
                &loc,
                "environments",
                format!("unknown environment `{env}`"),
                Some(help),
            );
            return Err(ConfigErrors { errors: vec![e] });
        }
    }

    // Build the selected environment strictly, then every other one for overlay-only mistakes.
    let build_one = |envs: &[String], sources: &Sources, strict: bool| {
        let mut tree = base.clone();
        let mut errs = Vec::new();
        let mut region: Vec<Loc> = Vec::new();
        for env in envs {
            if let Some(Node {
                kind: Kind::Table(map),
                ..
            }) = &inline
            {
                if let Some(entry) = map.get(env) {
                    region.push(entry.node.loc.clone());
                    apply_overlay(
                        &mut tree,
                        entry.node.clone(),
                        &format!("environments.{env}"),
                        sources,
                        &mut errs,
                    );
                }
            }
            if let Some((id, n)) = overlay_files.get(env) {
                region.push(Loc::new(*id, 0..usize::MAX));
                apply_overlay(&mut tree, n.clone(), "", sources, &mut errs);
            }
        }
        if let (true, Some(n)) = (strict, &set_overlay) {
            apply_overlay(&mut tree, n.clone(), "", sources, &mut errs);
        }
        apply_defaults(&mut tree, sources, &mut errs);
        let vars = variables(&tree, &root_dir, sources, opts, &mut errs);
        let (vars, mut env_sources) = vars;
        let env_files = env_files(&tree, &root_dir);
        let accounts = accounts(&tree);
        let users_files = users_files(&tree, &root_dir, &mut env_sources);
        let page_files = page_files(&tree, &root_dir);
        let mut b = Builder::new(&env_sources, &vars, root_dir.clone(), strict);
        b.env_files = &env_files;
        b.accounts = &accounts;
        b.users_files = &users_files;
        b.page_files = &page_files;
        let name = (!envs.is_empty()).then(|| envs.join(","));
        let stack = b.build(&tree, name, known.clone());
        errs.extend(b.errors);
        (stack, errs, b.warnings, region)
    };

    let (stack, mut errors, warnings, _) = build_one(&selected, &sources, true);
    for env in &known {
        if selected.len() == 1 && selected.contains(env) {
            continue;
        }
        let (_, errs, _, region) = build_one(std::slice::from_ref(env), &sources, false);
        for mut e in errs {
            let inside = region.iter().any(|r| {
                sources
                    .get(r.file)
                    .is_some_and(|f| f.path == e.file && within(&sources, r, &e))
            });
            let dup = errors.iter().any(|x| x.to_string() == e.to_string());
            if inside && !dup {
                e.message = format!("{} (environment {env})", e.message);
                errors.push(e);
            }
        }
    }
    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    errors.dedup_by(|a, b| a.to_string() == b.to_string());
    match stack {
        Some(mut stack) if errors.is_empty() => {
            stack.overrides = overrides;
            Ok(Loaded { stack, warnings })
        }
        _ => {
            if errors.is_empty() {
                errors.push(ConfigError::file(
                    path.to_path_buf(),
                    "the stack is invalid".into(),
                ));
            }
            Err(ConfigErrors { errors })
        }
    }
}

fn within(sources: &Sources, region: &Loc, e: &ConfigError) -> bool {
    let (l0, c0) = sources.line_col(region.file, region.span.start);
    let (l1, c1) = sources.line_col(region.file, region.span.end);
    (e.line, e.column) >= (l0, c0) && (e.line, e.column) <= (l1, c1)
}

fn parse(sources: &Sources, id: FileId, text: &str) -> Result<Node, Box<ConfigError>> {
    match toml_edit::ImDocument::parse(text.to_string()) {
        Ok(doc) => Ok(node::from_document(id, doc.as_table())),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            Err(Box::new(ConfigError::at(
                sources,
                &Loc::new(id, span),
                "",
                format!("invalid TOML: {message}"),
                None,
            )))
        }
    }
}

fn take_environments(base: &mut Node) -> Option<Node> {
    let Kind::Table(map) = &mut base.kind else {
        return None;
    };
    map.shift_remove("environments").map(|e| e.node)
}

/// `grove.NAME.toml` files beside `path` (named after its stem).
fn sibling_overlays(path: &Path) -> Vec<(String, PathBuf)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(env) = name
            .strip_prefix(stem)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.strip_suffix(".toml"))
        else {
            continue;
        };
        if !env.is_empty()
            && env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            out.push((env.to_string(), dir.join(name)));
        }
    }
    out.sort();
    out
}

fn apply_overlay(
    tree: &mut Node,
    mut overlay: Node,
    path: &str,
    sources: &Sources,
    errs: &mut Vec<ConfigError>,
) {
    let Kind::Table(map) = &mut overlay.kind else {
        errs.push(ConfigError::at(
            sources,
            &overlay.loc,
            path,
            format!(
                "an environment must be a table, found {}",
                overlay.kind.type_name()
            ),
            None,
        ));
        return;
    };
    if map.contains_key("environments") {
        if let Some(e) = map.get("environments") {
            errs.push(ConfigError::at(
                sources,
                &e.key_loc,
                "environments",
                "environments cannot be nested in an environment".to_string(),
                None,
            ));
        }
        map.shift_remove("environments");
    }
    if let Some(Entry {
        node: remove,
        key_loc,
    }) = map.shift_remove("remove")
    {
        let rpath = if path.is_empty() {
            "remove".to_string()
        } else {
            format!("{path}.remove")
        };
        match remove.kind {
            Kind::Array(items) => {
                for item in items {
                    match &item.kind {
                        Kind::Str(p) => {
                            if !node::remove_path(tree, p) {
                                errs.push(ConfigError::at(
                                    sources,
                                    &item.loc,
                                    &rpath,
                                    format!("`{p}` is not in the base stack, so it cannot be removed"),
                                    Some("a dotted path such as \"services.worker\" or \"edge.static\"".into()),
                                ));
                            }
                        }
                        other => errs.push(ConfigError::at(
                            sources,
                            &item.loc,
                            &rpath,
                            format!("expected a dotted path string, found {}", other.type_name()),
                            None,
                        )),
                    }
                }
            }
            other => errs.push(ConfigError::at(
                sources,
                &key_loc,
                &rpath,
                format!(
                    "expected an array of dotted paths, found {}",
                    other.type_name()
                ),
                None,
            )),
        }
    }
    node::merge(tree, overlay);
}

/// The environments the stack knows (its inline ones and its `grove.NAME.toml` siblings,
/// sorted), and the siblings parsed.
#[allow(clippy::type_complexity)]
fn environments(
    path: &Path,
    inline: &Option<Node>,
    sources: &mut Sources,
) -> Result<(Vec<String>, BTreeMap<String, (FileId, Node)>), ConfigErrors> {
    let mut errors = Vec::new();
    let siblings = sibling_overlays(path);
    let mut known: Vec<String> = Vec::new();
    if let Some(Node {
        kind: Kind::Table(map),
        ..
    }) = &inline
    {
        known.extend(map.keys().cloned());
    }
    for (name, _) in &siblings {
        if !known.contains(name) {
            known.push(name.clone());
        }
    }
    known.sort();
    let mut overlay_files: BTreeMap<String, (FileId, Node)> = BTreeMap::new();
    for (name, file) in &siblings {
        match std::fs::read_to_string(file) {
            Ok(t) => {
                let id = sources.add(file, &t);
                match parse(sources, id, &t) {
                    Ok(n) => {
                        overlay_files.insert(name.clone(), (id, n));
                    }
                    Err(e) => errors.push(*e),
                }
            }
            Err(e) => errors.push(ConfigError::file(file.clone(), format!("cannot read: {e}"))),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors { errors });
    }
    Ok((known, overlay_files))
}

/// `--set`, `GROVE_SET_...` and `grove scale` as one overlay (`None` when there is none),
/// with the overrides it is made of.
fn set_overlay(
    opts: &LoadOptions,
    sources: &mut Sources,
) -> Result<(Vec<crate::overrides::Override>, Option<Node>), ConfigErrors> {
    let overrides =
        crate::overrides::collect(&opts.vars, &opts.sets, &opts.scales).map_err(|refused| {
            let errors = refused
                .into_iter()
                .map(|r| {
                    ConfigError::file(
                        PathBuf::from("(--set)"),
                        format!("`{}`: {}", r.given, r.message),
                    )
                })
                .collect();
            ConfigErrors { errors }
        })?;
    let set_overlay = if overrides.is_empty() {
        None
    } else {
        let text = crate::overrides::as_toml(&overrides);
        let id = sources.add(Path::new("(--set)"), &text);
        Some(parse(sources, id, &text).map_err(|e| ConfigErrors { errors: vec![*e] })?)
    };
    Ok((overrides, set_overlay))
}

/// `[defaults]`: keys every service that runs a command has unless it sets them itself
/// (tables such as `env` merge key by key, as an overlay's do), applied once the
/// environments and `--set` are; recipes and remote upstreams keep their own settings.
fn apply_defaults(tree: &mut Node, sources: &Sources, errs: &mut Vec<ConfigError>) {
    let Kind::Table(top) = &mut tree.kind else {
        return;
    };
    let Some(defaults) = top.shift_remove("defaults") else {
        return;
    };
    if !matches!(defaults.node.kind, Kind::Table(_)) {
        errs.push(ConfigError::at(
            sources,
            &defaults.node.loc,
            "defaults",
            format!(
                "expected a table of service keys, found {}",
                defaults.node.kind.type_name()
            ),
            Some("[defaults] with keys such as image, cwd, env_file, env".to_string()),
        ));
        return;
    }
    for source in [
        "command",
        "recipe",
        "upstreams",
        "route",
        "replicas",
        "port",
    ] {
        if let Kind::Table(keys) = &defaults.node.kind {
            if let Some(e) = keys.get(source) {
                errs.push(ConfigError::at(
                    sources,
                    &e.key_loc,
                    &format!("defaults.{source}"),
                    format!("`{source}` belongs to each service, not to [defaults]"),
                    None,
                ));
            }
        }
    }
    let Some(Kind::Table(services)) = top.get_mut("services").map(|e| &mut e.node.kind) else {
        return;
    };
    for svc in services.values_mut() {
        let runs_a_command =
            matches!(&svc.node.kind, Kind::Table(keys) if keys.contains_key("command"));
        if !runs_a_command {
            continue;
        }
        let mut merged = defaults.node.clone();
        let own = std::mem::replace(&mut svc.node, merged.clone());
        merged.loc = own.loc.clone();
        node::merge(&mut merged, own);
        svc.node = merged;
    }
}

/// Each service's table of keys in the (merged) tree.
fn service_tables(tree: &Node) -> impl Iterator<Item = &indexmap::IndexMap<String, Entry>> {
    let services = match &tree.kind {
        Kind::Table(top) => match top.get("services").map(|e| &e.node.kind) {
            Some(Kind::Table(services)) => Some(services),
            _ => None,
        },
        _ => None,
    };
    services
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|svc| match &svc.node.kind {
            Kind::Table(keys) => Some(keys),
            _ => None,
        })
}

/// Every service's `env_file`, read here so that validation does no I/O: by the path as
/// written, its text or why it could not be read.
fn env_files(tree: &Node, root: &Path) -> crate::build::EnvFiles {
    let mut out = crate::build::EnvFiles::new();
    for keys in service_tables(tree) {
        if let Some(Kind::Str(file)) = keys.get("env_file").map(|e| &e.node.kind) {
            let file = std::path::PathBuf::from(file);
            let text = std::fs::read_to_string(root.join(&file)).map_err(|e| e.to_string());
            out.insert(file, text);
        }
    }
    out
}

/// `[edge] error_pages`' files, read here so that validation does no I/O.
fn page_files(tree: &Node, root: &Path) -> crate::build::PageFiles {
    let mut out = crate::build::PageFiles::new();
    let pages = match &tree.kind {
        Kind::Table(top) => top.get("edge").and_then(|e| match &e.node.kind {
            Kind::Table(edge) => edge.get("error_pages"),
            _ => None,
        }),
        _ => None,
    };
    if let Some(Kind::Table(pages)) = pages.map(|p| &p.node.kind) {
        for v in pages.values() {
            if let Kind::Str(f) = &v.node.kind {
                let file = std::path::PathBuf::from(f);
                let full = root.join(&file);
                let read = std::fs::read_to_string(&full)
                    .map_err(|e| format!("cannot read `{}`: {e}", full.display()));
                out.insert(file, read);
            }
        }
    }
    out
}

/// Every route's and `[edge]`'s `auth.basic.users_file` (an htpasswd file), read here and
/// registered as a source, so that a bad line is an error located in it.
fn users_files(tree: &Node, root: &Path, sources: &mut Sources) -> crate::build::UsersFiles {
    let table = |n: &Node| match &n.kind {
        Kind::Table(t) => Some(t.clone()),
        _ => None,
    };
    let edge_auth = table(tree)
        .and_then(|top| top.get("edge").and_then(|e| table(&e.node)))
        .and_then(|edge| edge.get("auth").map(|a| a.node.clone()));
    let route_auths = service_tables(tree).filter_map(|keys| {
        let route = table(&keys.get("route")?.node)?;
        Some(route.get("auth")?.node.clone())
    });
    let mut out = crate::build::UsersFiles::new();
    for auth in edge_auth.into_iter().chain(route_auths) {
        let file = table(&auth)
            .and_then(|a| table(&a.get("basic")?.node))
            .and_then(|b| match &b.get("users_file")?.node.kind {
                Kind::Str(s) => Some(std::path::PathBuf::from(s)),
                _ => None,
            });
        let Some(file) = file else { continue };
        if out.contains_key(&file) {
            continue;
        }
        let full = root.join(&file);
        let read = std::fs::read_to_string(&full)
            .map(|text| (sources.add(&full, &text), text))
            .map_err(|e| format!("cannot read `{}`: {e}", full.display()));
        out.insert(file, read);
    }
    out
}

/// Every service's `user` and `group`, looked up on this machine (names or numeric ids):
/// `user:NAME` and `group:NAME`, `true` when it exists.
fn accounts(tree: &Node) -> crate::build::Accounts {
    let mut out = crate::build::Accounts::new();
    for keys in service_tables(tree) {
        for k in ["user", "group"] {
            let name = match keys.get(k).map(|e| &e.node.kind) {
                Some(Kind::Str(s)) => s.clone(),
                Some(Kind::Int(i)) => i.to_string(),
                _ => continue,
            };
            let exists = match (k, name.parse::<u32>()) {
                (_, Ok(_)) => true,
                ("user", _) => nix::unistd::User::from_name(&name).ok().flatten().is_some(),
                _ => nix::unistd::Group::from_name(&name)
                    .ok()
                    .flatten()
                    .is_some(),
            };
            out.insert(format!("{k}:{name}"), exists);
        }
    }
    out
}

/// The interpolation variables: `.env` (from `stack.env_file`) under the process environment.
fn variables(
    tree: &Node,
    root: &Path,
    sources: &Sources,
    opts: &LoadOptions,
    errs: &mut Vec<ConfigError>,
) -> (BTreeMap<String, String>, Sources) {
    let mut sources = sources.clone();
    let mut vars = BTreeMap::new();
    let mut named: Option<(String, Loc)> = None;
    if let Kind::Table(top) = &tree.kind {
        if let Some(Kind::Table(stack)) = top.get("stack").map(|e| &e.node.kind) {
            if let Some(e) = stack.get("env_file") {
                if let Kind::Str(s) = &e.node.kind {
                    named = Some((s.clone(), e.node.loc.clone()));
                }
            }
        }
    }
    let file = named
        .as_ref()
        .map(|(s, _)| s.clone())
        .unwrap_or_else(|| ".env".to_string());
    let full = root.join(&file);
    match std::fs::read_to_string(&full) {
        Ok(text) => {
            let id = sources.add(&full, &text);
            match crate::dotenv::parse(&text) {
                Ok(lines) => {
                    for (k, v, _) in lines {
                        vars.insert(k, v);
                    }
                }
                Err((off, msg)) => errs.push(ConfigError::at(
                    &sources,
                    &Loc::new(id, off..off),
                    "",
                    msg,
                    None,
                )),
            }
        }
        Err(e) => {
            if let Some((_, loc)) = named {
                errs.push(ConfigError::at(
                    &sources,
                    &loc,
                    "stack.env_file",
                    format!("cannot read `{}`: {e}", full.display()),
                    Some("the path is relative to the stack file's folder".into()),
                ));
            }
        }
    }
    for (k, v) in &opts.vars {
        vars.insert(k.clone(), v.clone());
    }
    (vars, sources)
}
