//! The SQLite and PostgreSQL migration sets must stay twins: the same versions, and in each the same
//! tables with the same columns, so every query in store.rs means the same on both backends.
//! (The whole suite runs against PostgreSQL with `KEEL_TEST_DATABASE=postgres`; see docs/scale-out.md.)

use std::collections::BTreeMap;
use std::path::Path;

/// File name → (table → column names in order) of every migration in `dir`.
fn schema(dir: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.ends_with(".sql"),
            "{}: not a migration",
            path.display()
        );
        out.insert(name, tables(&std::fs::read_to_string(&path).unwrap()));
    }
    out
}

fn tables(sql: &str) -> BTreeMap<String, Vec<String>> {
    let mut tables = BTreeMap::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in sql.lines().map(str::trim) {
        if line.starts_with("--") || line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
            let name = rest.split([' ', '(']).next().unwrap().to_string();
            current = Some((name, Vec::new()));
        } else if line.starts_with(')') {
            if let Some((name, columns)) = current.take() {
                tables.insert(name, columns);
            }
        } else if let Some((_, columns)) = current.as_mut() {
            let word = line.split([' ', '(']).next().unwrap();
            if !matches!(
                word,
                "UNIQUE" | "PRIMARY" | "CHECK" | "FOREIGN" | "CONSTRAINT"
            ) {
                columns.push(word.to_string());
            }
        }
    }
    tables
}

#[test]
fn postgres_migrations_mirror_sqlite_migrations() {
    let sqlite = schema("migrations");
    let postgres = schema("migrations-postgres");
    assert_eq!(
        sqlite.keys().collect::<Vec<_>>(),
        postgres.keys().collect::<Vec<_>>(),
        "every migration in migrations/ needs a twin in migrations-postgres/"
    );
    assert!(sqlite["0001_init.sql"].contains_key("actions"));
    for (file, tables) in &sqlite {
        assert_eq!(tables, &postgres[file], "{file}: tables or columns differ");
    }
}
