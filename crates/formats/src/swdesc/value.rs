//! The configuration tree shared by the libconfig and JSON forms of `sw-description`.

/// One value of the tree. libconfig distinguishes arrays (`[..]`, scalars of one type) from lists
/// (`(..)`, anything); JSON arrays of same-typed scalars become [`Value::Array`], other JSON
/// arrays [`Value::List`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    List(Vec<Value>),
    Group(Group),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
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
    pub fn new() -> Self {
        Group {
            entries: Vec::new(),
        }
    }
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
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
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let idx = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.remove(idx).1)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Value)> {
        self.entries.iter_mut().map(|(k, v)| (k.as_str(), v))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
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
