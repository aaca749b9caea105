//! The configuration tree shared by the libconfig and JSON forms of `sw-description`.

/// One value of the tree. libconfig distinguishes arrays (`[..]`, scalars of one type) from lists
/// (`(..)`, anything); JSON arrays of same-typed scalars become [`Value::Array`], other JSON
/// arrays [`Value::List`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `true`/`false` (libconfig accepts any case).
    Bool(bool),
    /// A decimal or hex integer (libconfig's `L` suffix for 64-bit values is accepted and dropped).
    Int(i64),
    /// A floating-point number; always finite in a validated tree.
    Float(f64),
    /// A string, escapes resolved and adjacent literals concatenated; never contains NUL.
    Str(String),
    /// `[a, b]`: scalars that all have the same type.
    Array(Vec<Value>),
    /// `(a, b)`: values of any kind, e.g. the groups of `images`.
    List(Vec<Value>),
    /// `{ name = value; ... }`.
    Group(Group),
}

impl Value {
    /// The text of a [`Value::Str`]; `None` for every other kind (no conversion).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The settings of a [`Value::Group`]; `None` for every other kind.
    pub fn as_group(&self) -> Option<&Group> {
        match self {
            Value::Group(g) => Some(g),
            _ => None,
        }
    }
    /// Elements of an array or list.
    pub fn as_elements(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }
    /// Whether this is a boolean, integer, float or string (what an array may hold).
    pub fn is_scalar(&self) -> bool {
        matches!(
            self,
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_)
        )
    }
    /// Kind name used in error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::List(_) => "list",
            Value::Group(_) => "group",
        }
    }
    pub(crate) fn same_scalar_kind(&self, other: &Value) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
    /// A scalar rendered as text (strings as-is), as SWUpdate reads properties.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// An ordered set of named settings (libconfig group / JSON object). Names are unique.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Group {
    entries: Vec<(String, Value)>,
}

impl Group {
    /// A group without settings.
    pub fn new() -> Self {
        Group {
            entries: Vec::new(),
        }
    }
    /// The value of setting `name` in this group (not in nested groups; no link following).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
    /// Like [`Group::get`], for changing the value in place.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
    /// Whether this group has a setting `name` (of any kind).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Sets `name` (replacing in place if present, else appending). Returns the old value.
    pub fn set(&mut self, name: impl Into<String>, value: Value) -> Option<Value> {
        let name = name.into();
        match self.get_mut(&name) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.entries.push((name, value));
                None
            }
        }
    }
    /// Deletes setting `name`, keeping the order of the others. Returns its value, `None` if
    /// there was no such setting.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let idx = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.remove(idx).1)
    }
    /// The settings as `(name, value)`, in document (insertion) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// Like [`Group::iter`], with mutable values (names cannot change).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Value)> {
        self.entries.iter_mut().map(|(k, v)| (k.as_str(), v))
    }
    /// Number of settings directly in this group.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether the group has no settings (`{}`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub(crate) fn push_unique(&mut self, name: String, value: Value) -> Result<(), String> {
        if self.contains(&name) {
            return Err(name);
        }
        self.entries.push((name, value));
        Ok(())
    }
}

/// Whether `name` is a valid libconfig setting name: `[A-Za-z*][-A-Za-z0-9_*]*`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '*' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*'))
}
