//! The SQLite and PostgreSQL migration sets must stay twins: the same versions, and in each the same
//! tables with the same columns, so every query in store.rs means the same on both backends.
//! (The whole suite runs against PostgreSQL with `KEEL_TEST_DATABASE=postgres`; see docs/scale-out.md.)

use crate::common;

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

/// The PostgreSQL migrations apply (twice: the second start finds them done) and the store works on
/// them; this runs in the default (SQLite) pass too, so the PostgreSQL path never goes untested.
#[tokio::test]
async fn postgres_migrations_apply_and_store_works() {
    use keel_server::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres_database_url();
    let store = Store::open(dir.path(), Some(&url)).await.unwrap();
    let tenant = store.create_tenant("plant-7").await.unwrap();
    let target = store
        .create_target(tenant.id, "dev-1", "Dev 1", None, &["line-a".into()])
        .await
        .unwrap();
    store.close().await;

    let again = Store::open(dir.path(), Some(&url)).await.unwrap();
    let found = again.tenant_by_name("plant-7").await.unwrap().unwrap();
    assert_eq!(found.id, tenant.id);
    let targets = again.targets(tenant.id, Some("line-a")).await.unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].id, target.id);
    assert_eq!(targets[0].controller_id, "dev-1");
    // A second tenant with the same name violates the same UNIQUE constraint as on SQLite.
    let err = again.create_tenant("plant-7").await.unwrap_err();
    assert!(
        matches!(&err, sqlx::Error::Database(db) if db.is_unique_violation()),
        "{err}"
    );
    // Not a PostgreSQL URL: refused, not silently SQLite.
    assert!(Store::open(dir.path(), Some("mysql://x/y")).await.is_err());
    again.close().await;
}
