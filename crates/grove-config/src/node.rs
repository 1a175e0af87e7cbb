//! A TOML tree that remembers where each key and value was written, and the overlay merge.

use indexmap::IndexMap;
use toml_edit::{Item, Table, Value};

use crate::source::{FileId, Loc};

/// A value of the stack file with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value was written.
    pub loc: Loc,
    /// The value.
    pub kind: Kind,
}

/// A key of a table with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Where the key was written.
    pub key_loc: Loc,
    /// Its value.
    pub node: Node,
}

/// The TOML value kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A table, inline or not, in file order.
    Table(IndexMap<String, Entry>),
    /// An array (also an array of tables).
    Array(Vec<Node>),
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A date or time, kept as written.
    Datetime(String),
}

impl Kind {
    /// The TOML name of this kind, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Table(_) => "a table",
            Kind::Array(_) => "an array",
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Datetime(_) => "a date-time",
        }
    }
}

/// Converts a parsed document's root table.
pub fn from_document(file: FileId, root: &Table) -> Node {
    table_node(file, root, Loc::new(file, 0..0))
}

fn table_node(file: FileId, t: &Table, fallback: Loc) -> Node {
    let loc = t.span().map(|s| Loc::new(file, s)).unwrap_or(fallback);
    let mut map = IndexMap::new();
    for (k, item) in t.iter() {
        let key_loc = t
            .key(k)
            .and_then(|key| key.span())
            .map(|s| Loc::new(file, s))
            .unwrap_or_else(|| loc.clone());
        if let Some(node) = item_node(file, item, key_loc.clone()) {
            map.insert(k.to_string(), Entry { key_loc, node });
        }
    }
    Node {
        loc,
        kind: Kind::Table(map),
    }
}

fn item_node(file: FileId, item: &Item, fallback: Loc) -> Option<Node> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(value_node(file, v, fallback)),
        Item::Table(t) => Some(table_node(file, t, fallback)),
        Item::ArrayOfTables(a) => {
            let loc = a.span().map(|s| Loc::new(file, s)).unwrap_or(fallback);
            let items = a.iter().map(|t| table_node(file, t, loc.clone())).collect();
            Some(Node {
                loc,
                kind: Kind::Array(items),
            })
        }
    }
}

fn value_node(file: FileId, v: &Value, fallback: Loc) -> Node {
    let loc = v.span().map(|s| Loc::new(file, s)).unwrap_or(fallback);
    let kind = match v {
        Value::String(s) => Kind::Str(s.value().clone()),
        Value::Integer(i) => Kind::Int(*i.value()),
        Value::Float(f) => Kind::Float(*f.value()),
        Value::Boolean(b) => Kind::Bool(*b.value()),
        Value::Datetime(d) => Kind::Datetime(d.value().to_string()),
        Value::Array(a) => {
            Kind::Array(a.iter().map(|v| value_node(file, v, loc.clone())).collect())
        }
        Value::InlineTable(t) => {
            let mut map = IndexMap::new();
            for (k, v) in t.iter() {
                let key_loc = t
                    .key(k)
                    .and_then(|key| key.span())
                    .map(|s| Loc::new(file, s))
                    .unwrap_or_else(|| loc.clone());
                map.insert(
                    k.to_string(),
                    Entry {
                        key_loc: key_loc.clone(),
                        node: value_node(file, v, key_loc),
                    },
                );
            }
            Kind::Table(map)
        }
    };
    Node { loc, kind }
}

/// Deep-merges `overlay` into `base`: tables merge key by key, everything else replaces.
pub fn merge(base: &mut Node, overlay: Node) {
    match (&mut base.kind, overlay.kind) {
        (Kind::Table(b), Kind::Table(o)) => {
            for (k, entry) in o {
                match b.get_mut(&k) {
                    Some(existing) if matches!(existing.node.kind, Kind::Table(_)) => {
                        if matches!(entry.node.kind, Kind::Table(_)) {
                            merge(&mut existing.node, entry.node);
                        } else {
                            *existing = entry;
                        }
                    }
                    Some(existing) => *existing = entry,
                    None => {
                        b.insert(k, entry);
                    }
                }
            }
        }
        (_, kind) => {
            base.kind = kind;
            base.loc = overlay.loc;
        }
    }
}

/// Removes the dotted `path` from `root`; false when nothing was there.
pub fn remove_path(root: &mut Node, path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = parts.split_last() else {
        return false;
    };
    let mut node = root;
    for p in parents {
        let Kind::Table(map) = &mut node.kind else {
            return false;
        };
        match map.get_mut(*p) {
            Some(e) => node = &mut e.node,
            None => return false,
        }
    }
    match &mut node.kind {
        Kind::Table(map) => map.shift_remove(*last).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        let doc = toml_edit::ImDocument::parse(text.to_string()).unwrap_or_else(|e| panic!("{e}"));
        from_document(0, doc.as_table())
    }

    fn get<'a>(n: &'a Node, path: &str) -> Option<&'a Node> {
        let mut n = n;
        for p in path.split('.') {
            let Kind::Table(m) = &n.kind else { return None };
            n = &m.get(p)?.node;
        }
        Some(n)
    }

    #[test]
    fn tables_merge_arrays_and_values_replace() {
        let mut base = parse("[a]\nx = 1\ny = [1, 2]\n[a.t]\nk = 'v'\n");
        let over = parse("a.y = [3]\na.z = true\n[a.t]\nm = 'w'\n");
        merge(&mut base, over);
        assert_eq!(get(&base, "a.x").map(|n| &n.kind), Some(&Kind::Int(1)));
        assert_eq!(
            get(&base, "a.y").map(|n| n.kind.clone()),
            Some(Kind::Array(vec![Node {
                loc: get(&base, "a.y")
                    .and_then(|n| match &n.kind {
                        Kind::Array(v) => v.first().map(|x| x.loc.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
                kind: Kind::Int(3)
            }]))
        );
        assert_eq!(get(&base, "a.z").map(|n| &n.kind), Some(&Kind::Bool(true)));
        assert_eq!(
            get(&base, "a.t.k").map(|n| &n.kind),
            Some(&Kind::Str("v".into()))
        );
        assert_eq!(
            get(&base, "a.t.m").map(|n| &n.kind),
            Some(&Kind::Str("w".into()))
        );
    }

    #[test]
    fn a_value_can_replace_a_table_and_back() {
        let mut base = parse("[a]\nx = 1\n");
        merge(&mut base, parse("a = 'flat'\n"));
        assert_eq!(
            get(&base, "a").map(|n| &n.kind),
            Some(&Kind::Str("flat".into()))
        );
        merge(&mut base, parse("[a]\ny = 2\n"));
        assert_eq!(get(&base, "a.y").map(|n| &n.kind), Some(&Kind::Int(2)));
        assert!(get(&base, "a.x").is_none());
    }

    #[test]
    fn remove_deletes_dotted_paths() {
        let mut base = parse("[s.a]\nx = 1\n[s.b]\nx = 2\n");
        assert!(remove_path(&mut base, "s.a"));
        assert!(get(&base, "s.a").is_none());
        assert!(get(&base, "s.b.x").is_some());
        assert!(!remove_path(&mut base, "s.zzz"));
        assert!(!remove_path(&mut base, "s.b.x.deeper"));
    }

    #[test]
    fn locations_point_at_values() {
        let text = "[a]\nport = 8080\n";
        let n = parse(text);
        let port = get(&n, "a.port")
            .map(|n| n.loc.span.clone())
            .unwrap_or_default();
        assert_eq!(&text[port], "8080");
    }
}
