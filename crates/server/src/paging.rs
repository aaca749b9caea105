//! Paging of the management API's list endpoints in hawkBit's style (docs/management-api.md):
//! `offset`, `limit` (default 50, at most 500), `sort=field:ASC|DESC[,field:DIR...]` and a filter
//! `q` in a subset of FIQL (`name==gateway*;tag==line-1`). Answers are
//! `{"content": [...], "total": N, "size": n}`.
//!
//! This module parses and validates; it only produces SQL fragments from the whitelisted column
//! expressions of a [`Listing`] (declared next to the queries in store.rs) and `$N` placeholders,
//! so no request text ever reaches the SQL. Unknown query parameters, fields and operators are a
//! 400 naming what was wrong and what is allowed.

use crate::error::{ApiError, ApiResult};
use serde_json::{json, Value};

/// Items per page when the request gives no `limit`.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest `limit` accepted; above it the request is a 400 (never clamped).
pub const MAX_LIMIT: i64 = 500;
/// Longest `q` accepted, and most comparisons in it.
const MAX_Q_BYTES: usize = 2048;
const MAX_CONDITIONS: usize = 32;

/// What a field holds, which decides the comparisons `q` may use on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text: `==` / `!=` with `*` wildcards, case-insensitive.
    Text,
    /// Integer (ids, millisecond times): `==`, `!=`, `=lt=`, `=le=`, `=gt=`, `=ge=`.
    Int,
    /// Boolean stored as 0/1: `==true`, `!=false`, ...
    Bool,
    /// A text value in a related table: the field's `sql` is the related column and this template
    /// an `EXISTS (...)` with `{}` where the comparison goes. Filter only, `==` / `!=`.
    Exists(&'static str),
}

/// One field of a listed resource: its API name and the SQL expression behind it.
#[derive(Debug)]
pub struct Field {
    /// The field's name in the API: in `sort`, in `q` and in the answer's JSON.
    pub name: &'static str,
    /// The whitelisted SQL expression behind it (a column, or a subquery); never request text.
    pub sql: &'static str,
    /// What it holds, and so which `q` comparisons it accepts.
    pub kind: Kind,
    /// Whether it can be NULL; NULLs sort last either way.
    pub nullable: bool,
}

impl Field {
    /// A text field, not nullable.
    pub const fn text(name: &'static str, sql: &'static str) -> Field {
        Field {
            name,
            sql,
            kind: Kind::Text,
            nullable: false,
        }
    }
    /// An integer field, not nullable.
    pub const fn int(name: &'static str, sql: &'static str) -> Field {
        Field {
            name,
            sql,
            kind: Kind::Int,
            nullable: false,
        }
    }
    /// The same field, nullable.
    pub const fn nullable(self) -> Field {
        Field {
            nullable: true,
            ..self
        }
    }
    fn sortable(&self) -> bool {
        !matches!(self.kind, Kind::Exists(_))
    }
}

/// The fields a list endpoint sorts and filters on, its stable tie-breaker column and the
/// endpoint-specific query parameters it accepts besides the paging ones.
#[derive(Debug)]
pub struct Listing {
    /// Every field of the resource, in the order error messages list them.
    pub fields: &'static [Field],
    /// A unique column appended to every ORDER BY so pages never overlap or skip rows.
    pub tie: &'static str,
    /// Query parameters the endpoint takes besides `offset`, `limit`, `sort` and `q` (e.g. `tag`).
    pub extra_params: &'static [&'static str],
}

impl Listing {
    /// The names `sort` accepts (every field but the `Exists` ones).
    pub fn sort_fields(&self) -> Vec<&'static str> {
        self.fields
            .iter()
            .filter(|f| f.sortable())
            .map(|f| f.name)
            .collect()
    }
    /// The names `q` accepts (every field).
    pub fn filter_fields(&self) -> Vec<&'static str> {
        self.fields.iter().map(|f| f.name).collect()
    }
    fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A value bound to a `$N` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// An integer, or a boolean as 0/1.
    Int(i64),
    /// A text value (from `q`: wildcards already turned into a `LIKE` pattern).
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

const OPERATORS: &[(&str, Op)] = &[
    ("==", Op::Eq),
    ("!=", Op::Ne),
    ("=lt=", Op::Lt),
    ("=le=", Op::Le),
    ("=gt=", Op::Gt),
    ("=ge=", Op::Ge),
];

#[derive(Debug)]
struct Condition {
    field: &'static Field,
    op: Op,
    value: Bind,
}

/// A validated list request.
#[derive(Debug)]
pub struct PageRequest {
    /// Items to skip (`offset`, default 0).
    pub offset: i64,
    /// Items in the page (`limit`, 0..=[`MAX_LIMIT`], default [`DEFAULT_LIMIT`]).
    pub limit: i64,
    order_by: String,
    /// OR of AND groups (FIQL: `;` binds tighter than `,`).
    filter: Vec<Vec<Condition>>,
    /// The endpoint-specific parameters given (see [`Listing::extra_params`]).
    pub extra: Vec<(String, String)>,
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

impl PageRequest {
    /// Parses a raw query string against what `listing` allows.
    pub fn parse(query: Option<&str>, listing: &Listing) -> ApiResult<PageRequest> {
        let mut offset = 0;
        let mut limit = DEFAULT_LIMIT;
        let mut sort = String::new();
        let mut q = String::new();
        let mut extra = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if seen.iter().any(|k| *k == key) {
                return Err(bad(format!("query parameter {key:?} given twice")));
            }
            seen.push(key.to_string());
            match &*key {
                "offset" => offset = number("offset", &value, 0, i64::from(i32::MAX))?,
                "limit" => limit = number("limit", &value, 0, MAX_LIMIT)?,
                "sort" => sort = value.into_owned(),
                "q" => q = value.into_owned(),
                other if listing.extra_params.contains(&other) => {
                    extra.push((key.to_string(), value.into_owned()))
                }
                other => {
                    let mut expected = vec!["offset", "limit", "sort", "q"];
                    expected.extend(listing.extra_params);
                    return Err(bad(format!(
                        "unknown query parameter {other:?}; expected one of: {}",
                        expected.join(", ")
                    )));
                }
            }
        }
        Ok(PageRequest {
            offset,
            limit,
            order_by: order_by(&sort, listing)?,
            filter: parse_filter(&q, listing)?,
            extra,
        })
    }

    /// The value of an endpoint-specific parameter.
    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `ORDER BY` clause contents (whitelisted column expressions only).
    pub fn order_by(&self) -> &str {
        &self.order_by
    }

    /// The filter as a SQL condition (`TRUE`-like `1 = 1` when there is none) whose placeholders
    /// start at `$first`, and the values to bind to them in order.
    pub fn filter_sql(&self, first: usize) -> (String, Vec<Bind>) {
        if self.filter.is_empty() {
            return ("1 = 1".into(), Vec::new());
        }
        let mut binds = Vec::new();
        let groups: Vec<String> = self
            .filter
            .iter()
            .map(|group| {
                let parts: Vec<String> = group
                    .iter()
                    .map(|c| {
                        binds.push(c.value.clone());
                        condition_sql(c, first + binds.len() - 1)
                    })
                    .collect();
                format!("({})", parts.join(" AND "))
            })
            .collect();
        (format!("({})", groups.join(" OR ")), binds)
    }
}

fn number(name: &str, value: &str, min: i64, max: i64) -> ApiResult<i64> {
    match value.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(format!(
            "{name}: an integer from {min} to {max}, got {value:?}"
        ))),
    }
}

fn order_by(sort: &str, listing: &Listing) -> ApiResult<String> {
    let mut parts = Vec::new();
    let mut has_tie = false;
    for item in sort.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, direction) = item.split_once(':').unwrap_or((item, "ASC"));
        let field = listing
            .field(name.trim())
            .filter(|f| f.sortable())
            .ok_or_else(|| {
                bad(format!(
                    "sort: unknown field {:?}; sortable fields: {}",
                    name.trim(),
                    listing.sort_fields().join(", ")
                ))
            })?;
        let direction = match direction.trim().to_ascii_uppercase().as_str() {
            "ASC" => "ASC",
            "DESC" => "DESC",
            _ => {
                return Err(bad(format!(
                    "sort: direction {direction:?} of {name:?}: ASC or DESC"
                )))
            }
        };
        if parts.len() >= 8 {
            return Err(bad("sort: at most 8 fields".into()));
        }
        // NULLs last in both directions on both databases (their defaults differ).
        if field.nullable {
            parts.push(format!("({} IS NULL) ASC", field.sql));
        }
        parts.push(format!("{} {direction}", field.sql));
        has_tie |= field.sql == listing.tie;
    }
    if !has_tie {
        parts.push(format!("{} ASC", listing.tie));
    }
    Ok(parts.join(", "))
}

fn parse_filter(q: &str, listing: &Listing) -> ApiResult<Vec<Vec<Condition>>> {
    if q.trim().is_empty() {
        return Ok(Vec::new());
    }
    if q.len() > MAX_Q_BYTES {
        return Err(bad(format!("q: at most {MAX_Q_BYTES} bytes")));
    }
    let mut groups = vec![Vec::new()];
    let mut rest = q;
    let mut count = 0;
    loop {
        let (condition, after) = parse_condition(rest, q, listing)?;
        count += 1;
        if count > MAX_CONDITIONS {
            return Err(bad(format!("q: at most {MAX_CONDITIONS} comparisons")));
        }
        if let Some(group) = groups.last_mut() {
            group.push(condition);
        }
        match after.chars().next() {
            None => break,
            Some(';') => rest = &after[1..],
            Some(',') => {
                groups.push(Vec::new());
                rest = &after[1..];
            }
            Some(c) => {
                return Err(bad(format!(
                    "q: unexpected {c:?} at position {}; comparisons are joined with ';' (and) or ',' (or)",
                    q.len() - after.len()
                )))
            }
        }
    }
    Ok(groups)
}

/// One `field<op>value` at the start of `text`; returns it and the text after it.
fn parse_condition<'a>(
    text: &'a str,
    q: &str,
    listing: &Listing,
) -> ApiResult<(Condition, &'a str)> {
    let position = q.len() - text.len();
    let name_len = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let name = &text[..name_len];
    if name.is_empty() {
        return Err(bad(format!(
            "q: expected a field name at position {position} (syntax: field==value;field2!=value2)"
        )));
    }
    let field = listing.field(name).ok_or_else(|| {
        bad(format!(
            "q: unknown field {name:?}; filterable fields: {}",
            listing.filter_fields().join(", ")
        ))
    })?;
    let after_name = &text[name_len..];
    let (symbol, op) = OPERATORS
        .iter()
        .find(|(symbol, _)| after_name.starts_with(symbol))
        .copied()
        .ok_or_else(|| {
            bad(format!(
                "q: expected an operator after {name:?}: ==, !=, =lt=, =le=, =gt= or =ge="
            ))
        })?;
    let after_op = &after_name[symbol.len()..];
    let (value, rest) = if let Some(quoted) = after_op.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or_else(|| bad(format!("q: unterminated \"quoted\" value of {name:?}")))?;
        (&quoted[..end], &quoted[end + 1..])
    } else {
        let end = after_op.find([';', ',']).unwrap_or(after_op.len());
        (&after_op[..end], &after_op[end..])
    };
    if value.is_empty() {
        return Err(bad(format!("q: empty value for {name:?}")));
    }
    let value = match field.kind {
        Kind::Text | Kind::Exists(_) => {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(bad(format!(
                    "q: {name} is text: use == or != (with * as wildcard)"
                )));
            }
            Bind::Text(like_pattern(value))
        }
        Kind::Int => {
            if value.contains('*') {
                return Err(bad(format!("q: {name} is a number: no wildcards")));
            }
            Bind::Int(
                value
                    .parse()
                    .map_err(|_| bad(format!("q: {name} is a number, got {value:?}")))?,
            )
        }
        Kind::Bool => {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(bad(format!("q: {name} is true or false: use == or !=")));
            }
            match value {
                "true" => Bind::Int(1),
                "false" => Bind::Int(0),
                _ => return Err(bad(format!("q: {name} is true or false, got {value:?}"))),
            }
        }
    };
    Ok((Condition { field, op, value }, rest))
}

/// A value as a `LIKE ... ESCAPE '\'` pattern: `*` matches anything, `%`, `_` and `\` are literal.
fn like_pattern(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn condition_sql(c: &Condition, n: usize) -> String {
    let column = c.field.sql;
    let positive = match (c.field.kind, c.op) {
        (Kind::Text | Kind::Exists(_), _) => {
            format!("LOWER({column}) LIKE LOWER(${n}) ESCAPE '\\'")
        }
        (_, Op::Eq | Op::Ne) => format!("{column} = ${n}"),
        (_, Op::Lt) => format!("{column} < ${n}"),
        (_, Op::Le) => format!("{column} <= ${n}"),
        (_, Op::Gt) => format!("{column} > ${n}"),
        (_, Op::Ge) => format!("{column} >= ${n}"),
    };
    let positive = match c.field.kind {
        Kind::Exists(template) => template.replace("{}", &positive),
        _ => positive,
    };
    match (c.op, c.field.nullable) {
        (Op::Ne, true) => format!("({column} IS NULL OR NOT ({positive}))"),
        (Op::Ne, false) => format!("NOT ({positive})"),
        _ => positive,
    }
}

/// A page of results in hawkBit's shape.
pub fn page_json(content: Vec<Value>, total: i64) -> Value {
    let size = content.len();
    json!({ "content": content, "total": total, "size": size })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: Listing = Listing {
        fields: &[
            Field::int("id", "t.id"),
            Field::text("name", "t.name"),
            Field::int("lastPollAt", "t.last_poll_at").nullable(),
            Field {
                name: "tag",
                sql: "g.tag",
                kind: Kind::Exists("EXISTS (SELECT 1 FROM tags g WHERE g.target_id = t.id AND {})"),
                nullable: false,
            },
            Field {
                name: "active",
                sql: "t.active",
                kind: Kind::Bool,
                nullable: false,
            },
        ],
        tie: "t.id",
        extra_params: &["tag"],
    };

    fn parse(query: &str) -> ApiResult<PageRequest> {
        PageRequest::parse(Some(query), &LISTING)
    }

    fn error(query: &str) -> String {
        match parse(query) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("{query}: expected 400, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_limits() {
        let page = PageRequest::parse(None, &LISTING).unwrap();
        assert_eq!((page.offset, page.limit), (0, DEFAULT_LIMIT));
        assert_eq!(page.order_by(), "t.id ASC");
        assert_eq!(page.filter_sql(2), ("1 = 1".to_string(), Vec::new()));
        let page = parse("offset=10&limit=500&tag=a%20b").unwrap();
        assert_eq!((page.offset, page.limit), (10, 500));
        assert_eq!(page.extra("tag"), Some("a b"));
        assert_eq!(
            error("limit=501"),
            "limit: an integer from 0 to 500, got \"501\""
        );
        assert!(error("offset=-1").starts_with("offset: an integer"));
        assert!(error("limit=ten").starts_with("limit: an integer"));
        assert_eq!(
            error("pageSize=5"),
            "unknown query parameter \"pageSize\"; expected one of: offset, limit, sort, q, tag"
        );
        assert_eq!(
            error("limit=1&limit=2"),
            "query parameter \"limit\" given twice"
        );
    }

    #[test]
    fn sort_is_whitelisted_and_stable() {
        assert_eq!(
            parse("sort=name:DESC").unwrap().order_by(),
            "t.name DESC, t.id ASC"
        );
        assert_eq!(
            parse("sort=lastPollAt:asc,id:desc").unwrap().order_by(),
            "(t.last_poll_at IS NULL) ASC, t.last_poll_at ASC, t.id DESC"
        );
        assert_eq!(
            parse("sort=name").unwrap().order_by(),
            "t.name ASC, t.id ASC"
        );
        assert_eq!(
            error("sort=token:ASC"),
            "sort: unknown field \"token\"; sortable fields: id, name, lastPollAt, active"
        );
        assert!(error("sort=tag:ASC").starts_with("sort: unknown field \"tag\""));
        assert!(error("sort=name:UP").contains("ASC or DESC"));
        assert!(
            error("sort=name;DROP TABLE t").starts_with("sort: direction")
                || error("sort=name;DROP TABLE t").starts_with("sort: unknown field")
        );
    }

    #[test]
    fn fiql_subset_becomes_bound_sql() {
        let page = parse("q=name==gate*_1;tag!=line-1,id=ge=5;lastPollAt!=7;active==true").unwrap();
        let (sql, binds) = page.filter_sql(3);
        assert_eq!(
            sql,
            "((LOWER(t.name) LIKE LOWER($3) ESCAPE '\\' AND NOT (EXISTS (SELECT 1 FROM tags g WHERE \
             g.target_id = t.id AND LOWER(g.tag) LIKE LOWER($4) ESCAPE '\\'))) OR (t.id >= $5 AND \
             (t.last_poll_at IS NULL OR NOT (t.last_poll_at = $6)) AND t.active = $7))"
        );
        assert_eq!(
            binds,
            vec![
                Bind::Text("gate%\\_1".into()),
                Bind::Text("line-1".into()),
                Bind::Int(5),
                Bind::Int(7),
                Bind::Int(1),
            ]
        );
        let (_, binds) = parse("q=name==\"a,b;c\"").unwrap().filter_sql(1);
        assert_eq!(binds, vec![Bind::Text("a,b;c".into())]);
    }

    #[test]
    fn bad_filters_say_what_is_allowed() {
        assert_eq!(
            error("q=token==x"),
            "q: unknown field \"token\"; filterable fields: id, name, lastPollAt, tag, active"
        );
        assert!(error("q=name=like=x").starts_with("q: expected an operator after \"name\""));
        assert!(error("q=name=gt=x").starts_with("q: name is text"));
        assert!(error("q=id==abc").starts_with("q: id is a number"));
        assert!(error("q=id==1*").contains("no wildcards"));
        assert!(error("q=active==yes").contains("true or false"));
        assert!(error("q=name==").starts_with("q: empty value"));
        assert!(error("q=name==\"x").starts_with("q: unterminated"));
        assert!(error("q===x").starts_with("q: expected a field name"));
        assert!(error("q=name==\"x\"y").starts_with("q: unexpected 'y'"));
    }
}
