//! Several keel-server processes on one database (docs/scale-out.md, "Replicas").
//!
//! - `two_replicas_roll_out_to_10000_devices_through_a_kill`: two real `keel-server` processes on
//!   one PostgreSQL database and one S3 artifact store (s3s-fs); 10 000 simulated devices
//!   (`keel_fleet`) split over both; the replica holding the scheduler lease is killed with
//!   SIGKILL mid-rollout, its devices fail over, the other replica takes the lease over and the
//!   rollout completes; SQL then proves one action per device, each finished exactly once.
//! - `concurrent_schedulers_never_double_create_actions`: two store handles tick the scheduler
//!   at the same time, over and over, on the test database (SQLite or PostgreSQL).
//! - `the_scheduler_lease_has_one_holder`: take, renew, refuse, expire, take over, release.

use crate::common;

use common::replica::Replica;
use common::TestServer;
use keel_server::store::{ActionStatus, GroupStatus, NewAction, Store};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn count(pool: &sqlx::PgPool, sql: &str, rollout_id: i64) -> i64 {
    sqlx::query_scalar(sql)
        .bind(rollout_id)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

const DEVICES: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_roll_out_to_10000_devices_through_a_kill() {
    let database_url = common::postgres_database_url();
    // Artifacts on S3 (s3s-fs behind real SigV4 HTTP); each replica has a data directory of its own.
    let s3 = common::s3::S3Server::start();
    s3.create_bucket("keel");
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Replica::start(first_dir.path(), &database_url, Some(&s3));
    let second = Replica::start(second_dir.path(), &database_url, Some(&s3));
    let admin = first
        .admin_token
        .clone()
        .expect("admin token of the first start");
    assert!(second.admin_token.is_none(), "one admin token per database");
    let mut replicas = [first, second];

    // 10 000 devices, registered directly in the database with their derived tokens.
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let seed = "replicas-test";
    let sql = keel_fleet::registration_sql("default", "dev", 0, DEVICES, seed, "fleet", 1);
    sqlx::raw_sql(&sql).execute(&pool).await.unwrap();

    let mgmt = common::Mgmt {
        client: reqwest::Client::new(),
        base: replicas[0].base.clone(),
        token: Some(admin),
    };
    let (set_id, _) = mgmt
        .release("os", "2.0", "os.swu", common::image(7, 64 * 1024))
        .await;
    let rollout = mgmt
        .ok(
            reqwest::Method::POST,
            "/rest/v1/rollouts",
            Some(json!({
                "name": "to-ten-thousand", "distributionSetId": set_id, "tag": "fleet",
                "amountGroups": 4, "successThreshold": 100, "errorThreshold": 0, "type": "forced"
            })),
        )
        .await;
    let rollout_id = rollout["id"].as_i64().unwrap();

    let (stop_fleet, stop) = tokio::sync::watch::channel(false);
    let fleet = tokio::spawn(keel_fleet::run(
        keel_fleet::FleetConfig {
            servers: replicas.iter().map(|r| r.base.clone()).collect(),
            tenant: "default".into(),
            prefix: "dev".into(),
            first: 0,
            devices: DEVICES,
            auth: keel_fleet::Auth::TargetTokens { seed: seed.into() },
            interval: Some(Duration::from_secs(8)),
            jitter: 0.2,
            download: keel_fleet::Download::Range(1024),
            failure_ratio: 0.0,
            progress_steps: 1,
            max_in_flight: 128,
            duration: None,
            until_closed: None,
            seed: 8,
        },
        stop,
    ));
    mgmt.ok(
        reqwest::Method::POST,
        &format!("/rest/v1/rollouts/{rollout_id}/start"),
        None,
    )
    .await;

    // Mid-rollout (the first group finished, the second started): kill the lease holder.
    // Generous: on 2 quiet cores this takes 120–150 s, longer while the suite's other tests share
    // the process and the cores; the deadline only stops a stuck rollout.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let finished_groups = count(
            &pool,
            "SELECT COUNT(*) FROM rollout_groups WHERE rollout_id = $1 AND status = 'finished'",
            rollout_id,
        )
        .await;
        if finished_groups >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the first group never finished");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (holder, _): (String, i64) =
        sqlx::query_as("SELECT holder, expires_at FROM leases WHERE name = 'scheduler'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let killed = replicas
        .iter()
        .position(|r| holder.split(':').nth(1) == Some(&r.pid().to_string()))
        .unwrap_or_else(|| panic!("lease holder {holder:?} is neither replica"));
    replicas[killed].child.kill().unwrap(); // SIGKILL
    replicas[killed].child.wait().unwrap();
    let survivor = &replicas[1 - killed];
    let mgmt = common::Mgmt {
        base: survivor.base.clone(),
        ..mgmt
    };

    // The survivor takes the lease over and the rollout completes.
    let done = loop {
        let rollout: Value = mgmt.rollout(rollout_id).await;
        if rollout["status"] == "finished" {
            break rollout;
        }
        assert!(
            Instant::now() < deadline,
            "rollout did not finish after the kill: {rollout:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = stop_fleet.send(true);
    let report = fleet.await.unwrap().unwrap();
    let (holder_now, _): (String, i64) =
        sqlx::query_as("SELECT holder, expires_at FROM leases WHERE name = 'scheduler'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        holder_now.split(':').nth(1),
        Some(survivor.pid().to_string().as_str()),
        "the survivor holds the scheduler lease"
    );
    assert!(
        report.failovers > 0,
        "devices of the killed replica failed over: {report:#?}"
    );
    assert_eq!(
        report.closed_success + report.closed_already,
        DEVICES,
        "{report:#?}"
    );
    assert_eq!(report.closed_failure, 0);
    assert!(
        report.downloads >= DEVICES,
        "every device read the artifact (from S3): {report:#?}"
    );
    let artifact_keys: Vec<String> = s3
        .keys("keel")
        .into_iter()
        .filter(|k| k.starts_with("replicas/artifacts/"))
        .collect();
    assert_eq!(artifact_keys.len(), 1, "{artifact_keys:?}");
    eprintln!(
        "fleet: {} polls ({:.0}/s), {} failovers, {} closes answered 410 after a retry; rollout: {}",
        report.polls, report.polls_per_s, report.failovers, report.closed_already, done
    );

    // Exactly once, in SQL.
    let devices = i64::try_from(DEVICES).unwrap();
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM actions WHERE rollout_id = $1",
            rollout_id
        )
        .await,
        devices,
        "one action per device"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(DISTINCT target_id) FROM actions WHERE rollout_id = $1",
            rollout_id
        )
        .await,
        devices,
        "no device got two actions"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM actions WHERE rollout_id = $1 AND (status <> 'finished' OR active <> 0)",
            rollout_id
        )
        .await,
        0,
        "every action finished"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM (SELECT a.id FROM actions a LEFT JOIN action_status s \
             ON s.action_id = a.id AND s.status = 'finished' WHERE a.rollout_id = $1 \
             GROUP BY a.id HAVING COUNT(s.id) <> 1) AS wrong",
            rollout_id
        )
        .await,
        0,
        "every action has exactly one 'finished' report"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM rollout_groups WHERE rollout_id = $1 AND status <> 'finished'",
            rollout_id
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM targets WHERE controller_id LIKE 'dev%' AND $1 > 0 AND \
             (installed_action_id IS NULL OR installed_action_id NOT IN \
              (SELECT id FROM actions WHERE rollout_id = $1))",
            rollout_id
        )
        .await,
        0,
        "every device has the rollout's set installed"
    );
    pool.close().await;
}

/// Two scheduler instances (as in two replicas whose lease overlapped) tick at the same time,
/// again and again: each group's actions are created once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_schedulers_never_double_create_actions() {
    // The server's own scheduler waits an hour between ticks: the two below do the work.
    let server = TestServer::start_with(|c| c.scheduler_interval_ms = 3_600_000).await;
    let mgmt = server.mgmt();
    let mut devices = Vec::new();
    for n in 0..60 {
        let id = format!("sched-{n:02}");
        mgmt.device(&id, &["pair"]).await;
        devices.push(id);
    }
    let (old_set, _) = mgmt
        .release("os", "1.0", "os.swu", common::image(1, 512))
        .await;
    let (new_set, _) = mgmt
        .release("os", "2.0", "os.swu", common::image(2, 512))
        .await;
    // Open manual actions on some devices: starting a group supersedes them (once).
    mgmt.ok(
        reqwest::Method::POST,
        &format!("/rest/v1/distributionsets/{old_set}/assignedTargets"),
        Some(json!({ "targets": devices[..20] })),
    )
    .await;
    // successThreshold 0: every tick may start the next group, so the two schedulers race
    // on every group start.
    let rollout = mgmt
        .ok(
            reqwest::Method::POST,
            "/rest/v1/rollouts",
            Some(json!({
                "name": "race", "distributionSetId": new_set, "tag": "pair",
                "amountGroups": 12, "successThreshold": 0
            })),
        )
        .await;
    let rollout_id = rollout["id"].as_i64().unwrap();
    mgmt.ok(
        reqwest::Method::POST,
        &format!("/rest/v1/rollouts/{rollout_id}/start"),
        None,
    )
    .await;
    let a = server.open_store().await;
    let b = server.open_store().await;
    for _ in 0..15 {
        let (ra, rb) = tokio::join!(
            keel_server::scheduler::tick(&a),
            keel_server::scheduler::tick(&b)
        );
        // On SQLite a tick may lose a write-lock race with "database is locked"; what matters
        // is what committed.
        for result in [ra, rb] {
            if let Err(e) = result {
                eprintln!("tick: {e}");
            }
        }
    }
    let groups = a.rollout_groups(rollout_id).await.unwrap();
    assert_eq!(groups.len(), 12);
    for group in &groups {
        assert_ne!(
            group.status,
            GroupStatus::Scheduled,
            "group {} never started",
            group.name
        );
        let counts = a.group_counts(group.id).await.unwrap();
        assert_eq!(counts.scheduled, 0, "{}: {counts:?}", group.name);
        assert_eq!(
            counts.running, 5,
            "{}: one action per device: {counts:?}",
            group.name
        );
    }
    for id in &devices {
        let target = a
            .target(1, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id}"));
        let actions = a.target_actions(target.id).await.unwrap();
        let of_rollout: Vec<_> = actions
            .iter()
            .filter(|x| x.rollout_id == Some(rollout_id))
            .collect();
        assert_eq!(of_rollout.len(), 1, "{id}: {actions:?}");
        let open_not_canceling = actions
            .iter()
            .filter(|x| x.active == 1 && x.status != ActionStatus::Canceling)
            .count();
        assert_eq!(open_not_canceling, 1, "{id}: {actions:?}");
    }

    // Assignments of one target from two replicas at once leave one open action.
    let target = a.target(1, &devices[59]).await.unwrap().unwrap();
    let new = NewAction {
        action_type: "forced".into(),
        forcetime: None,
        maintenance: None,
    };
    for _ in 0..10 {
        let assign = |store: &Store| {
            let (store, target, new) = (store.clone(), target.clone(), new.clone());
            async move {
                let mut tx = store.begin().await?;
                Store::create_action_in(&mut tx, &target, old_set, &new).await?;
                tx.commit().await
            }
        };
        let (ra, rb) = tokio::join!(assign(&a), assign(&b));
        assert!(ra.is_ok() || rb.is_ok(), "{ra:?} {rb:?}");
    }
    let actions = a.target_actions(target.id).await.unwrap();
    let open: Vec<_> = actions
        .iter()
        .filter(|x| x.active == 1 && x.status != ActionStatus::Canceling)
        .collect();
    assert_eq!(open.len(), 1, "{actions:#?}");
    assert_eq!(open[0].id, actions.last().unwrap().id, "the newest one");
    a.close().await;
    b.close().await;
    server.stop().await;
}

#[tokio::test]
async fn the_scheduler_lease_has_one_holder() {
    let server = TestServer::start_with(|c| c.scheduler_interval_ms = 3_600_000).await;
    let store = server.open_store().await;
    let lease = "test-lease";
    assert!(store.acquire_lease(lease, "a", 60_000).await.unwrap());
    assert!(!store.acquire_lease(lease, "b", 60_000).await.unwrap());
    assert!(
        store.acquire_lease(lease, "a", 60_000).await.unwrap(),
        "renewal"
    );
    assert_eq!(store.lease(lease).await.unwrap().unwrap().holder, "a");
    // A lease that expired (its holder stopped renewing) is taken over.
    assert!(store.acquire_lease(lease, "a", -1).await.unwrap());
    assert!(store.acquire_lease(lease, "b", 60_000).await.unwrap());
    assert!(!store.acquire_lease(lease, "a", 60_000).await.unwrap());
    // Released: the next one takes it at once.
    store.release_lease(lease, "a").await.unwrap();
    assert_eq!(
        store.lease(lease).await.unwrap().unwrap().holder,
        "b",
        "only its holder releases it"
    );
    store.release_lease(lease, "b").await.unwrap();
    assert!(store.lease(lease).await.unwrap().is_none());
    assert!(store.acquire_lease(lease, "a", 60_000).await.unwrap());
    // The scheduler ticks only while it holds the lease.
    assert!(!keel_server::scheduler::tick_if_leader(&store, "c", 60_000)
        .await
        .unwrap());
    store.close().await;
    server.stop().await;
}

/// The first `name="csrf"` hidden field of a page.
fn csrf_field(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("page has a CSRF field") + marker.len();
    let end = body[start..].find('"').unwrap();
    body[start..start + end].to_string()
}

/// `name=value` of the cookie `name` set by a response.
fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_string()
}

/// A dashboard login made on one replica works on another, and a logout on the other ends it
/// everywhere: sessions live in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_sessions_work_on_every_replica() {
    let first = TestServer::start().await;
    let mut config = keel_server::Config::for_data_dir(first.dir.path());
    config.database_url = first.database_url.clone();
    let second = keel_server::Server::bind(config).await.unwrap();
    let second_base = format!("http://{}", second.local_addr().unwrap());
    let (stop_second, stopped) = tokio::sync::oneshot::channel::<()>();
    let second_task = tokio::spawn(second.serve(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let form = client
        .get(format!("{}/ui/login", first.base))
        .send()
        .await
        .unwrap();
    let login_cookie = set_cookie(&form, "keel_login");
    let nonce = csrf_field(&form.text().await.unwrap());
    let login = client
        .post(format!("{}/ui/login", first.base))
        .header(reqwest::header::COOKIE, &login_cookie)
        .form(&[
            ("csrf", nonce.as_str()),
            ("token", first.admin.as_str()),
            ("tenant", "default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::SEE_OTHER);
    let session = set_cookie(&login, "keel_session");
    assert!(!session.contains(&first.admin));

    let page = |base: String| {
        let (client, session) = (client.clone(), session.clone());
        async move {
            client
                .get(format!("{base}/ui/fleet"))
                .header(reqwest::header::COOKIE, session)
                .send()
                .await
                .unwrap()
        }
    };
    let on_second = page(second_base.clone()).await;
    assert_eq!(
        on_second.status(),
        reqwest::StatusCode::OK,
        "the other replica knows the session"
    );
    let body = on_second.text().await.unwrap();
    assert!(body.contains("tenant default"), "{body}");
    let store = first.open_store().await;
    let rows: i64 = {
        let url = first.database_url.clone();
        match url {
            Some(url) => {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                let stored: Vec<(String, String)> =
                    sqlx::query_as("SELECT token_sealed, csrf FROM dashboard_sessions")
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                assert!(stored
                    .iter()
                    .all(|(sealed, _)| !sealed.contains(&first.admin)
                        && !sealed.contains(&hex_of(&first.admin))));
                stored.len() as i64
            }
            None => 1,
        }
    };
    assert_eq!(rows, 1);

    let logout = client
        .post(format!("{second_base}/ui/logout"))
        .header(reqwest::header::COOKIE, &session)
        .form(&[("csrf", csrf_field(&body).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), reqwest::StatusCode::SEE_OTHER);
    let after = page(first.base.clone()).await;
    assert_eq!(
        after.status(),
        reqwest::StatusCode::SEE_OTHER,
        "logged out everywhere"
    );
    assert_eq!(
        after.headers().get(reqwest::header::LOCATION).unwrap(),
        "/ui/login"
    );
    store.close().await;
    let _ = stop_second.send(());
    second_task.await.unwrap().unwrap();
    first.stop().await;
}

use hex::encode as hex_of;
