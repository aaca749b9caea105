//! `sw-description`: SWUpdate's update description, in libconfig (default) or JSON syntax.
//!
//! [`SwDescription::parse`] reads either syntax (JSON when the first non-blank character is `{`)
//! into a generic tree ([`Value`]/[`Group`]); [`SwDescription::to_libconfig`] writes the tree as
//! libconfig. The typed view [`Software`] is obtained by resolving the tree the way SWUpdate's
//! parser does (`parser/parser.c`, 2022.12):
//!
//! * [`SwDescription::software`]: no selection: every field is looked up in `software.<field>`.
//! * [`SwDescription::select`] with `["stable", "copy1"]` (like `swupdate -e stable,copy1`): each
//!   field is looked up in `software.stable.copy1.<field>` first and falls back to
//!   `software.<field>` (so `version` and `hardware-compatibility` usually sit at the top).
//!   `select_for_board` adds SWUpdate's board-specific lookups (`software.<board>...`).
//! * Links: a group holding `ref = "#./other"` stands for the node the link points to (`.` is the
//!   parent of the group, `..` its parent, a first component other than `.`/`..` starts at the
//!   root); an element `{ ref = "..." }` of `images`/`files`/`scripts`/`bootenv` stands for the
//!   list it points to.
//!
//! Unlike SWUpdate, selecting a set/mode that does not exist is an error
//! ([`ParseError::SelectionNotFound`]) instead of a silent fall-back to the top level.

mod libconfig;
mod value;

pub use value::{is_valid_name, Group, Value};

use thiserror::Error;

/// The root setting name (SWUpdate's default `CONFIG_PARSERROOT`).
pub const ROOT: &str = "software";
/// Largest sw-description accepted by [`SwDescription::parse`].
pub const MAX_DESCRIPTION_LEN: usize = 16 * 1024 * 1024;
/// Link-following depth limit (SWUpdate uses 10).
const MAX_LINK_DEPTH: usize = 10;
/// Image `type` of a keel static delta entry: the member is a keel delta against the same target
/// of the booted slot (docs/delta-format.md, "In a .swu and on the server").
pub const KEEL_DELTA_TYPE: &str = "keel-delta";
/// Image `type` of a chunk-indexed entry: the member is a chunk index, the pack lies beside the
/// bundle (docs/delta-format.md).
pub const KEEL_CHUNKED_TYPE: &str = "keel-chunked";

/// Entry lists of a software node that [`Software`] resolves, in the order it collects them
/// (`bootenv` also falls back to the legacy `uboot`).
pub const ENTRY_LISTS: [&str; 4] = ["images", "files", "scripts", "bootenv"];
/// Keys of a software node that are not set/mode selections.
const RESERVED_KEYS: [&str; 14] = [
    "version",
    "description",
    "hardware-compatibility",
    "images",
    "files",
    "scripts",
    "bootenv",
    "uboot",
    "partitions",
    "embedded-script",
    "bootloader_transaction_marker",
    "bootloader_state_marker",
    "output",
    "ref",
];

/// Errors parsing or resolving a sw-description. Messages name the line or the setting path.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ParseError {
    /// The input is longer than [`MAX_DESCRIPTION_LEN`]; nothing was parsed.
    #[error("sw-description is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Length of the input in bytes.
        len: usize,
        /// The limit, [`MAX_DESCRIPTION_LEN`].
        max: usize,
    },
    /// The input is not UTF-8 (libconfig and JSON are both read as UTF-8 text).
    #[error("sw-description is not valid UTF-8 (byte offset {offset})")]
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The libconfig text does not parse: bad token, unterminated string, `@include`, nesting
    /// deeper than 64 levels, duplicate setting, mixed array, ...
    #[error("sw-description (libconfig) line {line}, column {column}: {message}")]
    Syntax {
        /// Line of the offending character, 1-based.
        line: usize,
        /// Column of the offending character, 1-based, counted in bytes.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// The JSON text does not parse or holds something libconfig cannot represent (`null`, an
    /// out-of-range number, a duplicate key, a top level that is not an object, too deep nesting).
    #[error("sw-description (JSON): {0}")]
    Json(String),
    /// The top level has no group named `software` ([`ROOT`]).
    #[error("sw-description has no `software` group at the top level")]
    NoSoftware,
    /// A setting has the wrong type or value (e.g. `version` not a string, `sha256` not 64 hex
    /// digits, `ivt` not 32 hex digits), or a tree given to [`SwDescription::from_root`] has an
    /// invalid name, a mixed array, a non-finite float or a NUL in a string.
    #[error("sw-description: {path}: {message}")]
    Field {
        /// Dotted path of the setting, e.g. `software.images[0].sha256`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The requested `set,mode` selection does not exist under `software` (nor under the board
    /// section, when one is given), or the selection is not a pair. SWUpdate would silently fall
    /// back to the top level; keel refuses.
    #[error("sw-description: selection {selection:?} not found (no group software.{selection})")]
    SelectionNotFound {
        /// The selection as asked for, `set.mode` (or `a,b,c` for a selection of the wrong
        /// length).
        selection: String,
    },
    /// A `ref` link is malformed, points at nothing, or links form a chain longer than 10 (a
    /// loop).
    #[error("sw-description: link {reference:?} at {path}: {reason}")]
    Link {
        /// Dotted path of the node holding the link.
        path: String,
        /// The link text (`#./other`); empty when the error is about a chain of links.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Which syntax a description was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// libconfig, SWUpdate's default syntax and the one keel writes.
    Libconfig,
    /// JSON (the first non-blank character was `{`).
    Json,
}

/// A parsed sw-description: the whole tree, with `software` at its root.
#[derive(Debug, Clone, PartialEq)]
pub struct SwDescription {
    root: Group,
    syntax: Syntax,
}

/// One entry of `images`, `files`, `scripts` or `bootenv`: the common attributes SWUpdate reads
/// plus the raw group with every key (`fields`) for anything else (`filesystem`, `offset`, ...).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entry {
    /// `filename`: name of the bundle member holding the data; `None` for entries without data
    /// (e.g. a `bootenv` name/value pair).
    pub filename: Option<String>,
    /// `type`: the handler (raw, rawfile, roundrobin, lua, shellscript, ...).
    pub kind: Option<String>,
    /// `device`: the block device or MTD the handler writes to (e.g. `/dev/mmcblk0p2`).
    pub device: Option<String>,
    /// `path`: destination file of a `files` entry.
    pub path: Option<String>,
    /// `volume`: the UBI volume of a `ubivol` image.
    pub volume: Option<String>,
    /// `sha256` of the bytes stored in the bundle (for encrypted images: the ciphertext).
    pub sha256: Option<[u8; 32]>,
    /// `encrypted`: the member is AES-256-CBC ciphertext (a boolean, or a non-empty cipher name
    /// other than `"false"` as newer SWUpdate writes it); `false` when absent.
    pub encrypted: bool,
    /// Per-image IV (32 hex digits) overriding the key file's IV.
    pub ivt: Option<String>,
    /// `compressed`: "zlib", "zstd", ... (boolean `true` is SWUpdate's deprecated form of "zlib").
    pub compressed: Option<String>,
    /// `installed-directly`: stream the member straight to its handler without a temporary copy.
    pub installed_directly: bool,
    /// `install-if-different`: skip the entry when the installed version of `name` equals
    /// `version`.
    pub install_if_different: bool,
    /// `install-if-higher`: skip the entry unless `version` is higher than the installed
    /// version of `name`.
    pub install_if_higher: bool,
    /// `properties`: name -> values (a property may be a string or a list of strings).
    pub properties: Vec<(String, Vec<String>)>,
    /// `name`: the component name compared by `install-if-*`, or the variable of a `bootenv`
    /// name/value entry.
    pub name: Option<String>,
    /// `version`: the component version compared by `install-if-different`/`install-if-higher`.
    pub version: Option<String>,
    /// `value` of a `bootenv` name/value entry.
    pub value: Option<String>,
    /// All keys of the entry as written.
    pub fields: Group,
}

/// The resolved description of what to install (one selection).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Software {
    /// `version`: the release version of the whole update, as the device reports it.
    pub version: Option<String>,
    /// `description`: free text for humans.
    pub description: Option<String>,
    /// `None` when absent (SWUpdate built with hardware compatibility then rejects the bundle).
    pub hardware_compatibility: Option<Vec<String>>,
    /// `images` entries with a `filename` (SWUpdate skips the others).
    pub images: Vec<Entry>,
    /// `files` entries with a `filename`.
    pub files: Vec<Entry>,
    /// `scripts` entries (all of them, with or without `filename`).
    pub scripts: Vec<Entry>,
    /// `bootenv` (or legacy `uboot`) entries: name/value pairs or scripts with a filename.
    pub bootenv: Vec<Entry>,
}

impl Software {
    /// Every entry that refers to a bundle member (has a `filename`), in document order:
    /// images, files, scripts, then bootenv scripts.
    pub fn member_entries(&self) -> impl Iterator<Item = &Entry> {
        self.images
            .iter()
            .chain(&self.files)
            .chain(&self.scripts)
            .chain(&self.bootenv)
            .filter(|e| e.filename.is_some())
    }
}

fn path_string(path: &[String]) -> String {
    path.join(".")
}

impl SwDescription {
    /// Parses libconfig or JSON (auto-detected) and checks that a `software` group exists.
    pub fn parse(bytes: &[u8]) -> Result<SwDescription, ParseError> {
        if bytes.len() > MAX_DESCRIPTION_LEN {
            return Err(ParseError::TooLarge {
                len: bytes.len(),
                max: MAX_DESCRIPTION_LEN,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (root, syntax) = if text.trim_start().starts_with('{') {
            (json_to_group(text)?, Syntax::Json)
        } else {
            (libconfig::parse(text)?, Syntax::Libconfig)
        };
        match root.get(ROOT) {
            Some(Value::Group(_)) => Ok(SwDescription { root, syntax }),
            _ => Err(ParseError::NoSoftware),
        }
    }

    /// A description whose top-level group is `root` (must contain a `software` group).
    pub fn from_root(root: Group) -> Result<SwDescription, ParseError> {
        validate_tree(&root, &mut vec![])?;
        match root.get(ROOT) {
            Some(Value::Group(_)) => Ok(SwDescription {
                root,
                syntax: Syntax::Libconfig,
            }),
            _ => Err(ParseError::NoSoftware),
        }
    }

    /// The syntax the description was parsed from ([`Syntax::Libconfig`] for
    /// [`SwDescription::from_root`]); [`SwDescription::to_libconfig`] always writes libconfig.
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// The whole tree (top level; `software` is one of its settings).
    pub fn root(&self) -> &Group {
        &self.root
    }

    /// Mutable access to the `software` group, e.g. to fill in `sha256` values.
    pub fn software_group_mut(&mut self) -> &mut Group {
        match self.root.get_mut(ROOT) {
            Some(Value::Group(g)) => g,
            _ => unreachable!("checked at construction"),
        }
    }

    /// The tree as libconfig text (what keel writes as `sw-description`).
    pub fn to_libconfig(&self) -> String {
        libconfig::write(&self.root)
    }

    /// The top-level software (no `-e` selection).
    pub fn software(&self) -> Result<Software, ParseError> {
        self.resolve(None, None)
    }

    /// Resolves like `swupdate -e set,mode`: `select(&["stable", "copy1"])`. An empty slice is
    /// the same as [`SwDescription::software`].
    pub fn select(&self, selection: &[&str]) -> Result<Software, ParseError> {
        match selection {
            [] => self.resolve(None, None),
            [set, mode] => self.resolve(None, Some((set, mode))),
            _ => Err(ParseError::SelectionNotFound {
                selection: selection.join(","),
            }),
        }
    }

    /// Resolution with a board name (SWUpdate's hardware-specific sections) and optional set/mode.
    pub fn select_for_board(
        &self,
        board: &str,
        selection: Option<(&str, &str)>,
    ) -> Result<Software, ParseError> {
        self.resolve(Some(board), selection)
    }

    /// The `(set, mode)` pairs present as groups under `software` (e.g. `stable`/`copy1`), in
    /// document order.
    pub fn selections(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Some(Value::Group(sw)) = self.root.get(ROOT) else {
            return out;
        };
        for (set, v) in sw.iter() {
            let Value::Group(set_group) = v else { continue };
            if RESERVED_KEYS.contains(&set) {
                continue;
            }
            for (mode, mv) in set_group.iter() {
                if let Value::Group(g) = mv {
                    if g.contains("ref") || ENTRY_LISTS.iter().any(|k| g.contains(k)) {
                        out.push((set.to_string(), mode.to_string()));
                    }
                }
            }
        }
        out
    }

    /// Every entry with a `filename` reachable without selection or through any of
    /// [`SwDescription::selections`], de-duplicated by identical content, in document order.
    pub fn all_member_entries(&self) -> Result<Vec<Entry>, ParseError> {
        let mut all: Vec<Entry> = Vec::new();
        let mut push = |sw: Software| {
            for e in sw.member_entries() {
                if !all.contains(e) {
                    all.push(e.clone());
                }
            }
        };
        push(self.software()?);
        for (set, mode) in self.selections() {
            push(self.select(&[&set, &mode])?);
        }
        Ok(all)
    }

    /// Every entry group with a `filename` anywhere under `software` (in `images`, `files`,
    /// `scripts`, `bootenv`, `uboot` or `partitions` lists of any section), in document order,
    /// including duplicates: what a bundle made from this description must contain. Unlike
    /// [`SwDescription::all_member_entries`] this needs no resolution, so it also covers
    /// board-specific sections.
    pub fn tree_member_entries(&self) -> Result<Vec<Entry>, ParseError> {
        let mut out = Vec::new();
        let mut path = vec![ROOT.to_string()];
        if let Some(Value::Group(sw)) = self.root.get(ROOT) {
            walk_entries(sw, &mut path, &mut |g, p| {
                out.push(entry_from_group(g, p)?);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Calls `f` with every entry group [`SwDescription::tree_member_entries`] would return, for
    /// changing it (e.g. filling in `sha256`). `f` must keep setting names valid.
    pub fn for_each_member_group_mut<E>(
        &mut self,
        mut f: impl FnMut(&mut Group) -> Result<(), E>,
    ) -> Result<(), E> {
        walk_entries_mut(self.software_group_mut(), &mut f)
    }

    /// Looks a dotted path up, following a `ref` link at the final node.
    fn lookup(&self, mut path: Vec<String>) -> Result<Option<(Vec<String>, &Value)>, ParseError> {
        for _ in 0..MAX_LINK_DEPTH {
            let mut node: Option<&Value> = None;
            let mut group = &self.root;
            for (i, key) in path.iter().enumerate() {
                match group.get(key) {
                    Some(v) if i + 1 == path.len() => node = Some(v),
                    Some(Value::Group(g)) => group = g,
                    _ => return Ok(None),
                }
            }
            let Some(node) = node else { return Ok(None) };
            let reference = match node {
                Value::Group(g) => g.get("ref").and_then(Value::as_str),
                _ => None,
            };
            match reference {
                Some(r) => path = follow_link(&path, r)?,
                None => return Ok(Some((path, node))),
            }
        }
        Err(ParseError::Link {
            path: path_string(&path),
            reference: String::new(),
            reason: format!("more than {MAX_LINK_DEPTH} links in a row (loop?)"),
        })
    }

    /// SWUpdate's `find_node_and_path`: the first of board/set/mode, set/mode, board, top level
    /// whose prefix exists and holds `field`.
    fn find_field(
        &self,
        field: &str,
        board: Option<&str>,
        selection: Option<(&str, &str)>,
    ) -> Result<Option<(Vec<String>, &Value)>, ParseError> {
        let root = ROOT.to_string();
        let mut candidates: Vec<Vec<String>> = Vec::new();
        if let (Some(b), Some((s, m))) = (board, selection) {
            candidates.push(vec![root.clone(), b.into(), s.into(), m.into()]);
        }
        if let Some((s, m)) = selection {
            candidates.push(vec![root.clone(), s.into(), m.into()]);
        }
        if let Some(b) = board {
            candidates.push(vec![root.clone(), b.into()]);
        }
        candidates.push(vec![root]);
        for prefix in candidates {
            if let Some((mut prefix_path, _)) = self.lookup(prefix)? {
                prefix_path.push(field.to_string());
                if let Some(found) = self.lookup(prefix_path)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    fn resolve(
        &self,
        board: Option<&str>,
        selection: Option<(&str, &str)>,
    ) -> Result<Software, ParseError> {
        if let Some((set, mode)) = selection {
            let mut found = self
                .lookup(vec![ROOT.into(), set.into(), mode.into()])?
                .is_some();
            if let Some(b) = board {
                found |= self
                    .lookup(vec![ROOT.into(), b.into(), set.into(), mode.into()])?
                    .is_some();
            }
            if !found {
                return Err(ParseError::SelectionNotFound {
                    selection: format!("{set}.{mode}"),
                });
            }
        }
        let string_field = |field: &str| -> Result<Option<String>, ParseError> {
            match self.find_field(field, board, selection)? {
                None => Ok(None),
                Some((path, Value::Str(s))) => {
                    let _ = path;
                    Ok(Some(s.clone()))
                }
                Some((path, v)) => Err(ParseError::Field {
                    path: path_string(&path),
                    message: format!("expected a string, found a {}", v.kind()),
                }),
            }
        };
        let version = string_field("version")?;
        let description = string_field("description")?;
        let hardware_compatibility =
            match self.find_field("hardware-compatibility", board, selection)? {
                None => None,
                Some((path, v)) => {
                    let elements = v.as_elements().ok_or_else(|| ParseError::Field {
                        path: path_string(&path),
                        message: format!("expected an array of strings, found a {}", v.kind()),
                    })?;
                    Some(
                        elements
                            .iter()
                            .filter_map(|e| e.as_str().map(str::to_string))
                            .collect(),
                    )
                }
            };
        let mut sw = Software {
            version,
            description,
            hardware_compatibility,
            ..Software::default()
        };
        for list in ENTRY_LISTS {
            let mut found = self.find_field(list, board, selection)?;
            if found.is_none() && list == "bootenv" {
                found = self.find_field("uboot", board, selection)?;
            }
            let Some((path, value)) = found else { continue };
            let mut entries = Vec::new();
            self.collect_entries(&path, value, &mut entries, 0)?;
            let keep: fn(&Entry) -> bool = match list {
                "images" | "files" => |e| e.filename.is_some(),
                "bootenv" => |e| e.filename.is_some() || e.name.is_some(),
                _ => |_| true,
            };
            entries.retain(keep);
            match list {
                "images" => sw.images = entries,
                "files" => sw.files = entries,
                "scripts" => sw.scripts = entries,
                _ => sw.bootenv = entries,
            }
        }
        Ok(sw)
    }

    fn collect_entries(
        &self,
        path: &[String],
        value: &Value,
        out: &mut Vec<Entry>,
        depth: usize,
    ) -> Result<(), ParseError> {
        if depth > MAX_LINK_DEPTH {
            return Err(ParseError::Link {
                path: path_string(path),
                reference: String::new(),
                reason: format!("more than {MAX_LINK_DEPTH} nested entry links (loop?)"),
            });
        }
        let elements = value.as_elements().ok_or_else(|| ParseError::Field {
            path: path_string(path),
            message: format!("expected a list of groups, found a {}", value.kind()),
        })?;
        for (i, element) in elements.iter().enumerate() {
            let Value::Group(g) = element else { continue };
            let entry_path = format!("{}[{i}]", path_string(path));
            if let Some(r) = g.get("ref").and_then(Value::as_str) {
                let target = follow_link(path, r)?;
                match self.lookup(target.clone())? {
                    Some((target_path, target_value)) => {
                        self.collect_entries(&target_path, target_value, out, depth + 1)?
                    }
                    None => {
                        return Err(ParseError::Link {
                            path: entry_path,
                            reference: r.to_string(),
                            reason: format!("target {} does not exist", path_string(&target)),
                        })
                    }
                }
                continue;
            }
            out.push(entry_from_group(g, &entry_path)?);
        }
        Ok(())
    }
}

const TREE_ENTRY_LISTS: [&str; 6] = [
    "images",
    "files",
    "scripts",
    "bootenv",
    "uboot",
    "partitions",
];

fn walk_entries(
    g: &Group,
    path: &mut Vec<String>,
    f: &mut dyn FnMut(&Group, &str) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    for (key, value) in g.iter() {
        path.push(key.to_string());
        match value {
            Value::Group(child) => walk_entries(child, path, f)?,
            Value::List(items) | Value::Array(items) if TREE_ENTRY_LISTS.contains(&key) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Group(entry) = item {
                        if entry.get("filename").is_some() {
                            f(entry, &format!("{}[{i}]", path_string(path)))?;
                        }
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
    Ok(())
}

fn walk_entries_mut<E>(
    g: &mut Group,
    f: &mut impl FnMut(&mut Group) -> Result<(), E>,
) -> Result<(), E> {
    for (key, value) in g.iter_mut() {
        match value {
            Value::Group(child) => walk_entries_mut(child, f)?,
            Value::List(items) | Value::Array(items) if TREE_ENTRY_LISTS.contains(&key) => {
                for item in items.iter_mut() {
                    if let Value::Group(entry) = item {
                        if entry.get("filename").is_some() {
                            f(entry)?;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// SWUpdate's `set_find_path`: resolves a `#`-link relative to the node at `path`.
fn follow_link(path: &[String], reference: &str) -> Result<Vec<String>, ParseError> {
    let err = |reason: &str| ParseError::Link {
        path: path_string(path),
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    let body = reference
        .strip_prefix('#')
        .ok_or_else(|| err("links must start with '#'"))?;
    if reference.len() < 3 {
        return Err(err("link too short"));
    }
    // "." is the parent of the node holding the link.
    let mut out: Vec<String> = path[..path.len().saturating_sub(1)].to_vec();
    let mut first = true;
    for token in body.split('/').filter(|t| !t.is_empty()) {
        match token {
            ".." => {
                if out.pop().is_none() {
                    return Err(err("'..' goes above the root"));
                }
            }
            "." => {}
            name => {
                if first {
                    out.clear();
                }
                out.push(name.to_string());
            }
        }
        first = false;
    }
    if out.is_empty() {
        return Err(err("link points at nothing"));
    }
    Ok(out)
}

fn entry_from_group(g: &Group, path: &str) -> Result<Entry, ParseError> {
    let field_err = |key: &str, message: String| ParseError::Field {
        path: format!("{path}.{key}"),
        message,
    };
    let string = |key: &str| -> Result<Option<String>, ParseError> {
        match g.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(v) => Err(field_err(
                key,
                format!("expected a string, found a {}", v.kind()),
            )),
        }
    };
    let boolean = |key: &str| -> Result<bool, ParseError> {
        match g.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Int(i)) => Ok(*i != 0),
            Some(v) => Err(field_err(
                key,
                format!("expected a boolean, found a {}", v.kind()),
            )),
        }
    };
    let sha256 = match string("sha256")? {
        None => None,
        Some(s) => Some(
            parse_sha256(&s)
                .ok_or_else(|| field_err("sha256", format!("{s:?} is not 64 hex digits")))?,
        ),
    };
    let encrypted = match g.get("encrypted") {
        // Newer SWUpdate spells the cipher ("aes-cbc"); 2022.12 takes a boolean.
        Some(Value::Str(s)) => s != "false" && !s.is_empty(),
        _ => boolean("encrypted")?,
    };
    let compressed = match g.get("compressed") {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some("zlib".to_string()),
        Some(Value::Str(s)) => Some(s.clone()),
        Some(v) => {
            return Err(field_err(
                "compressed",
                format!("expected a string, found a {}", v.kind()),
            ))
        }
    };
    let ivt = string("ivt")?;
    if let Some(iv) = &ivt {
        if iv.len() != 32 || !iv.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(field_err("ivt", format!("{iv:?} is not 32 hex digits")));
        }
    }
    let mut properties = Vec::new();
    if let Some(p) = g.get("properties") {
        let Value::Group(pg) = p else {
            return Err(field_err(
                "properties",
                format!("expected a group, found a {}", p.kind()),
            ));
        };
        for (name, v) in pg.iter() {
            let values = match v {
                Value::Array(items) | Value::List(items) => {
                    items.iter().filter_map(Value::scalar_text).collect()
                }
                other => other.scalar_text().into_iter().collect(),
            };
            properties.push((name.to_string(), values));
        }
    }
    Ok(Entry {
        filename: string("filename")?,
        kind: string("type")?,
        device: string("device")?,
        path: string("path")?,
        volume: string("volume")?,
        sha256,
        encrypted,
        ivt,
        compressed,
        installed_directly: boolean("installed-directly")?,
        install_if_different: boolean("install-if-different")?,
        install_if_higher: boolean("install-if-higher")?,
        properties,
        name: string("name")?,
        version: string("version")?,
        value: string("value")?,
        fields: g.clone(),
    })
}

/// Parses 64 hex digits.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn json_to_group(text: &str) -> Result<Group, ParseError> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    match json_to_value(json, "", 0)? {
        Value::Group(g) => Ok(g),
        _ => Err(ParseError::Json("top level is not an object".into())),
    }
}

fn json_to_value(json: serde_json::Value, path: &str, depth: usize) -> Result<Value, ParseError> {
    if depth > libconfig::MAX_DEPTH {
        return Err(ParseError::Json(format!(
            "{path}: nesting deeper than {} levels",
            libconfig::MAX_DEPTH
        )));
    }
    Ok(match json {
        serde_json::Value::Null => {
            return Err(ParseError::Json(format!("{path}: null is not supported")))
        }
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => match n.as_f64() {
                Some(f) if f.is_finite() && n.as_u64().is_none() => Value::Float(f),
                _ => return Err(ParseError::Json(format!("{path}: number {n} out of range"))),
            },
        },
        serde_json::Value::String(s) => {
            if s.contains('\0') {
                return Err(ParseError::Json(format!(
                    "{path}: string contains a NUL character"
                )));
            }
            Value::Str(s)
        }
        serde_json::Value::Array(items) => {
            let values = items
                .into_iter()
                .enumerate()
                .map(|(i, v)| json_to_value(v, &format!("{path}[{i}]"), depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            array_or_list(values)
        }
        serde_json::Value::Object(map) => {
            let mut g = Group::new();
            for (k, v) in map {
                let child_path = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if !is_valid_name(&k) {
                    return Err(ParseError::Json(format!(
                        "{child_path}: key {k:?} is not a valid setting name"
                    )));
                }
                let value = json_to_value(v, &child_path, depth + 1)?;
                g.push_unique(k, value)
                    .map_err(|k| ParseError::Json(format!("duplicate key {k:?}")))?;
            }
            Value::Group(g)
        }
    })
}

/// A libconfig array when every element is a scalar of one kind, else a list.
pub fn array_or_list(values: Vec<Value>) -> Value {
    let homogeneous = !values.is_empty()
        && values
            .iter()
            .all(|v| v.is_scalar() && v.same_scalar_kind(&values[0]));
    if homogeneous {
        Value::Array(values)
    } else {
        Value::List(values)
    }
}

fn validate_tree(g: &Group, path: &mut Vec<String>) -> Result<(), ParseError> {
    if path.len() > libconfig::MAX_DEPTH {
        return Err(ParseError::Field {
            path: path_string(path),
            message: "nesting too deep".into(),
        });
    }
    for (k, v) in g.iter() {
        path.push(k.to_string());
        if !is_valid_name(k) {
            return Err(ParseError::Field {
                path: path_string(path),
                message: "not a valid setting name".into(),
            });
        }
        validate_value(v, path)?;
        path.pop();
    }
    Ok(())
}

fn validate_value(v: &Value, path: &mut Vec<String>) -> Result<(), ParseError> {
    match v {
        Value::Group(g) => validate_tree(g, path),
        Value::Array(items) => {
            if items
                .iter()
                .any(|i| !i.is_scalar() || !i.same_scalar_kind(&items[0]))
            {
                return Err(ParseError::Field {
                    path: path_string(path),
                    message: "array elements must be scalars of one type".into(),
                });
            }
            Ok(())
        }
        Value::List(items) => items.iter().try_for_each(|i| validate_value(i, path)),
        Value::Float(f) if !f.is_finite() => Err(ParseError::Field {
            path: path_string(path),
            message: "float is not finite".into(),
        }),
        Value::Str(s) if s.contains('\0') => Err(ParseError::Field {
            path: path_string(path),
            message: "string contains NUL".into(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
