//! Backup and restore through the real binary against real servers, on both engines: a tenant with rows is
//! backed up, purged (the purge takes a backup of its own first and its audit event names it), and restored into
//! a new slug that has the rows, checksums as recorded, and credentials of its own. A missing backup and a
//! tampered one (one byte changed) are refused with nothing created; a purge that cannot take a backup is refused
//! before anything is dropped, and `--no-backup` purges without one, explicitly and audited.

use crate::for_each_engine;
use crate::harness::{eventually, Engine, Fleet, Server};
use crate::resources::unique;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Connection;
use std::os::unix::fs::PermissionsExt;

for_each_engine!(
    backup_purge_and_restore_into_a_new_slug,
    a_purge_that_cannot_take_a_backup_is_refused,
    backup_and_restore_over_the_api_for_admins_only,
    prune_removes_expired_backups_key_files_and_row,
);

const ROWS: [&str; 3] = ["alpha", "beta", "gamma"];

async fn write_rows(engine: Engine, url: &str) {
    let statements = [
        "CREATE TABLE backup_probe (note TEXT NOT NULL)".to_owned(),
        format!(
            "INSERT INTO backup_probe (note) VALUES {}",
            ROWS.map(|row| format!("('{row}')")).join(", ")
        ),
    ];
    match engine {
        Engine::Postgres => {
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            for statement in &statements {
                sqlx::query(statement)
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
            connection.close().await.unwrap();
        }
        Engine::Sqlite => {
            let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
            for statement in &statements {
                sqlx::query(statement)
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
            connection.close().await.unwrap();
        }
    }
}

async fn read_rows(engine: Engine, url: &str) -> Vec<String> {
    const SELECT: &str = "SELECT note FROM backup_probe ORDER BY note";
    match engine {
        Engine::Postgres => {
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(SELECT)
                .fetch_all(&mut connection)
                .await
                .unwrap()
        }
        Engine::Sqlite => {
            let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
            let rows = sqlx::query_scalar(SELECT)
                .fetch_all(&mut connection)
                .await
                .unwrap();
            connection.close().await.unwrap();
            rows
        }
    }
}

fn phase_names(job: &Value) -> Vec<String> {
    job["phases"]
        .as_array()
        .unwrap_or_else(|| panic!("no phases in {job}"))
        .iter()
        .map(|phase| phase["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn audit_events(fleet: &Fleet, slug: &str, event_type: &str) -> Vec<Value> {
    fleet
        .json(&["audit", "list", "--tenant", slug])
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event_type"] == event_type)
        .cloned()
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

async fn backups_of(fleet: &Fleet, slug: &str) -> Vec<Value> {
    fleet
        .json(&["backups", "list", slug])
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn backup_purge_and_restore_into_a_new_slug(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let slug = unique("bk");
    fleet.provision(&slug, &[]).await.assert_ok();
    let old_url = fleet.secret(&format!("tenant-db-{slug}")).await.unwrap();
    write_rows(engine, &old_url).await;

    // A backup job: one phase per resource holding data (the database), its file 0600 and its key stored.
    let created = fleet.run(&["backups", "create", &slug, "--json"]).await;
    created.assert_ok();
    let job = created.json()["job"].clone();
    assert_eq!(job["kind"], "backup", "{job}");
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(
        phase_names(&job),
        [
            "request_validated",
            "key_created",
            "database_backed_up",
            "complete"
        ]
    );
    let first_backup = job["job_id"]
        .as_str()
        .or(job["id"].as_str())
        .unwrap()
        .to_owned();
    let listed = backups_of(&fleet, &slug).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], first_backup.as_str());
    assert_eq!(listed[0]["status"], "complete");
    let file = &listed[0]["resources"][0];
    assert_eq!(file["kind"], "database", "{file}");
    let path = fleet.data_path(&format!("backups/{first_backup}/database.dump"));
    let stored = std::fs::read(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The checksum of the stored file is the registry's, and the file is not the plaintext dump.
    assert_eq!(file["stored_sha256"], sha256_hex(&stored).as_str());
    assert_eq!(file["stored_bytes"], stored.len() as u64);
    assert_ne!(file["plain_sha256"], file["stored_sha256"]);
    assert!(!stored.windows(5).any(|window| window == b"alpha"));
    assert!(fleet
        .secret(&format!("backup-{first_backup}"))
        .await
        .is_some());
    assert!(audit_events(&fleet, &slug, "BACKUP_CREATED").await.len() == 1);

    // The purge takes a backup first, and its audit event names it.
    let purged = fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge", "--json"])
        .await;
    purged.assert_ok();
    let purge_job = purged.json()["job"].clone();
    assert!(
        phase_names(&purge_job).contains(&"backup_taken".to_owned()),
        "{purge_job}"
    );
    let purge_backup = purge_job["job_id"]
        .as_str()
        .or(purge_job["id"].as_str())
        .unwrap()
        .to_owned();
    let purge_audit = audit_events(&fleet, &slug, "TENANT_PURGED").await;
    assert_eq!(purge_audit.len(), 1);
    assert_eq!(
        purge_audit[0]["details"]["backup_id"],
        purge_backup.as_str(),
        "{purge_audit:?}"
    );
    assert_eq!(fleet.server_has(&slug).await, (false, false));
    assert_eq!(backups_of(&fleet, &slug).await.len(), 2);

    // Restored into a new slug: a tenant of its own with the rows and its own credentials.
    let restored_slug = unique("rs");
    let restored = fleet
        .run(&[
            "backups",
            "restore",
            &purge_backup,
            "--to",
            &restored_slug,
            "--json",
        ])
        .await;
    restored.assert_ok();
    let restore_job = restored.json()["job"].clone();
    assert_eq!(restore_job["kind"], "restore", "{restore_job}");
    assert_eq!(restore_job["status"], "complete", "{restore_job}");
    let logs = restore_job.to_string();
    assert!(logs.contains("as recorded"), "{logs}");
    let new_url = fleet
        .secret(&format!("tenant-db-{restored_slug}"))
        .await
        .unwrap();
    assert_ne!(new_url, old_url);
    assert_eq!(read_rows(engine, &new_url).await, ROWS);
    if engine == Engine::Postgres {
        // The old role is gone with the purge; its credentials do not open the new database.
        let (old_base, _) = old_url.rsplit_once('/').unwrap();
        let old_into_new = format!("{old_base}/tenant_{}", restored_slug.replace('-', "_"));
        assert!(sqlx::PgConnection::connect(&old_into_new).await.is_err());
    }
    let restored_audit = audit_events(&fleet, &restored_slug, "BACKUP_RESTORED").await;
    assert_eq!(restored_audit.len(), 1);
    assert_eq!(
        restored_audit[0]["details"]["backup_id"],
        purge_backup.as_str()
    );
    let validated = fleet.run(&["validate", "--slug", &restored_slug]).await;
    validated.assert_ok();

    // A missing backup: E_NOT_FOUND, nothing made.
    let missing_slug = unique("ms");
    let missing = fleet
        .run(&[
            "backups",
            "restore",
            "0190-no-such-backup",
            "--to",
            &missing_slug,
        ])
        .await;
    assert_eq!(
        missing.error_code().as_deref(),
        Some("E_NOT_FOUND"),
        "{missing:?}"
    );

    // A tampered backup (one byte changed): E_BACKUP_CORRUPT, nothing made.
    let mut tampered = stored.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    std::fs::write(&path, &tampered).unwrap();
    let refused = fleet
        .run(&["backups", "restore", &first_backup, "--to", &missing_slug])
        .await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_BACKUP_CORRUPT"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("checksum"), "{refused:?}");
    for slug in [&missing_slug] {
        assert!(fleet
            .tenants()
            .await
            .iter()
            .all(|tenant| tenant["slug"] != slug.as_str()));
        assert!(fleet
            .jobs()
            .await
            .iter()
            .all(|job| job["tenant_slug"] != slug.as_str()));
        assert_eq!(fleet.server_has(slug).await, (false, false));
    }

    // A file changed after the restore was accepted: the job's stream refuses it, and the job rolls back.
    let late_slug = unique("lt");
    let recorded = fleet
        .run(&[
            "backups",
            "restore",
            &purge_backup,
            "--to",
            &late_slug,
            "--no-wait",
            "--json",
        ])
        .await;
    recorded.assert_ok();
    let late_job = recorded.json()["job_id"]
        .as_str()
        .or(recorded.json()["job"]["job_id"].as_str())
        .unwrap_or_else(|| panic!("{recorded:?}"))
        .to_owned();
    let purge_path = fleet.data_path(&format!("backups/{purge_backup}/database.dump"));
    let intact = std::fs::read(&purge_path).unwrap();
    let mut changed = intact.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0x01;
    std::fs::write(&purge_path, &changed).unwrap();
    let resumed = fleet.run(&["jobs", "resume", &late_job]).await;
    assert_eq!(
        resumed.error_code().as_deref(),
        Some("E_BACKUP_CORRUPT"),
        "{resumed:?}"
    );
    assert_eq!(fleet.server_has(&late_slug).await, (false, false));
    assert!(fleet
        .tenants()
        .await
        .iter()
        .all(|tenant| tenant["slug"] != late_slug.as_str()));
    std::fs::write(&purge_path, &intact).unwrap();

    fleet
        .run(&[
            "offboard-tenant",
            "--slug",
            &restored_slug,
            "--purge",
            "--no-backup",
        ])
        .await
        .assert_ok();

    // doctor names a backup whose file is gone and a backup directory the registry has no row for.
    fleet.assert_doctor_clean().await;
    std::fs::remove_file(&path).unwrap();
    let stray = fleet.data_path("backups/0190-stray");
    std::fs::create_dir_all(&stray).unwrap();
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_ne!(doctor.status, 0);
    let findings = doctor.json()["findings"].to_string();
    assert!(
        findings.contains(&format!("backup {first_backup}")) && findings.contains("database file"),
        "{findings}"
    );
    assert!(findings.contains("0190-stray"), "{findings}");
    fleet.cleanup().await;
}

async fn a_purge_that_cannot_take_a_backup_is_refused(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let slug = unique("nb");
    fleet.provision(&slug, &[]).await.assert_ok();
    // A backup store under a regular file cannot be made.
    let blocker = fleet.scratch_dir.join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let unwritable = blocker.join("backups");
    let unwritable = unwritable.to_str().unwrap();
    let env = [("TENANTRY_BACKUP_DIR", unwritable)];

    let refused = fleet
        .run_env(&["offboard-tenant", "--slug", &slug, "--purge"], &env)
        .await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("PROVISIONING_UNAVAILABLE"),
        "{refused:?}"
    );
    // Nothing was dropped or even started.
    let exists = fleet.server_has(&slug).await;
    assert!(exists.0, "{exists:?}");
    let tenants = fleet.tenants().await;
    let tenant = tenants
        .iter()
        .find(|tenant| tenant["slug"] == slug.as_str())
        .unwrap();
    assert_eq!(tenant["status"], "active");
    let backup = fleet.run_env(&["backups", "create", &slug], &env).await;
    assert_eq!(
        backup.error_code().as_deref(),
        Some("PROVISIONING_UNAVAILABLE"),
        "{backup:?}"
    );

    // --no-backup needs --purge, and purges explicitly without one: audited as such.
    let alone = fleet
        .run(&["offboard-tenant", "--slug", &slug, "--no-backup"])
        .await;
    assert_ne!(alone.status, 0, "{alone:?}");
    fleet
        .run_env(
            &["offboard-tenant", "--slug", &slug, "--purge", "--no-backup"],
            &env,
        )
        .await
        .assert_ok();
    let purged = audit_events(&fleet, &slug, "TENANT_PURGED").await;
    assert_eq!(purged.len(), 1);
    assert_eq!(purged[0]["details"]["no_backup"], true, "{purged:?}");
    assert_eq!(purged[0]["details"]["backup_id"], Value::Null, "{purged:?}");
    assert!(backups_of(&fleet, &slug).await.is_empty());
    assert_eq!(fleet.server_has(&slug).await, (false, false));
    fleet.cleanup().await;
}

async fn job_status(server: &Server, token: &str, job_id: &str) -> Value {
    server
        .get(&format!("/platform/jobs/{job_id}"), token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn finished(server: &Server, token: &str, job_id: &str) -> Value {
    eventually(
        30,
        || format!("job {job_id} to finish"),
        || async {
            let job = job_status(server, token, job_id).await;
            ["complete", "failed", "rolled_back"]
                .contains(&job["status"].as_str().unwrap_or_default())
                .then_some(job)
        },
    )
    .await
}

async fn backup_and_restore_over_the_api_for_admins_only(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let slug = unique("ab");
    fleet.provision(&slug, &[]).await.assert_ok();
    let url = fleet.secret(&format!("tenant-db-{slug}")).await.unwrap();
    write_rows(engine, &url).await;
    let admin = fleet.token_for("admin@example.com", "PLATFORM_ADMIN").await;
    let readonly = fleet
        .token_for("readonly@example.com", "PLATFORM_READONLY")
        .await;
    let server = fleet.serve(&[]).await;

    let path = format!("/platform/tenants/{slug}/backups");
    let refused = server.post(&path, &readonly).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let accepted = server.post(&path, &admin).send().await.unwrap();
    assert_eq!(accepted.status(), 202);
    let backup_id = accepted.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = finished(&server, &admin, &backup_id).await;
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(job["kind"], "backup", "{job}");

    // Every role reads the list; it holds sizes and checksums, never a key.
    let listed: Value = server
        .get(&format!("/platform/backups?tenant={slug}"), &readonly)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], backup_id.as_str(), "{listed}");
    assert!(!listed.to_string().contains("key\""), "{listed}");

    let restore = format!("/platform/backups/{backup_id}/restore");
    let restored_slug = unique("ar");
    let refused = server
        .post(&restore, &readonly)
        .json(&json!({ "to_slug": restored_slug }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // In place takes no new slug: the two together are refused.
    let in_place = server
        .post(&restore, &admin)
        .json(&json!({ "in_place": true, "to_slug": restored_slug }))
        .send()
        .await
        .unwrap();
    assert_eq!(in_place.status(), 422);
    let missing = server
        .post("/platform/backups/no-such-backup/restore", &admin)
        .json(&json!({ "to_slug": restored_slug }))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let accepted = server
        .post(&restore, &admin)
        .json(&json!({ "to_slug": restored_slug }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let job_id = accepted.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = finished(&server, &admin, &job_id).await;
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(job["kind"], "restore", "{job}");

    // The console: the tenant page lists the backup; an admin gets "Back up now", whose form post ends on the
    // backup job's page; a read-only user sees the list without the button.
    const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";
    let page = |cookie: String| {
        let server = &server;
        let slug = slug.clone();
        async move {
            server
                .http
                .get(server.url(&format!("/platform/tenants/{slug}")))
                .header("accept", BROWSER_ACCEPT)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let reader = fleet
        .console_session(&server, "viewer@example.com", "PLATFORM_READONLY")
        .await;
    let html = page(reader).await;
    assert!(html.contains(&backup_id), "{html}");
    assert!(!html.contains("Back up now"), "{html}");
    let cookie = fleet
        .console_session(&server, "ops@example.com", "PLATFORM_ADMIN")
        .await;
    let html = page(cookie.clone()).await;
    assert!(html.contains("Back up now"), "{html}");
    let (_, after) = html
        .split_once("<meta name=\"csrf-token\" content=\"")
        .unwrap();
    let csrf = after.split('"').next().unwrap().to_owned();
    let posted = server
        .http
        .post(server.url(&path))
        .header("accept", BROWSER_ACCEPT)
        .header("cookie", &cookie)
        .form(&[("csrf_token", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 303);
    let location = posted.headers()["location"].to_str().unwrap().to_owned();
    let job = finished(
        &server,
        &admin,
        location.trim_start_matches("/platform/jobs/"),
    )
    .await;
    assert_eq!(
        (&job["kind"], &job["status"]),
        (&json!("backup"), &json!("complete")),
        "{job}"
    );
    server.terminate().await;
    let restored_url = fleet
        .secret(&format!("tenant-db-{restored_slug}"))
        .await
        .unwrap();
    assert_eq!(read_rows(engine, &restored_url).await, ROWS);
    for slug in [&slug, &restored_slug] {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge", "--no-backup"])
            .await
            .assert_ok();
    }
    fleet.cleanup().await;
}

async fn prune_removes_expired_backups_key_files_and_row(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let slug = unique("pr");
    fleet.provision(&slug, &[]).await.assert_ok();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let created = fleet.run(&["backups", "create", &slug, "--json"]).await;
        created.assert_ok();
        ids.push(created.json()["job"]["job_id"].as_str().unwrap().to_owned());
    }
    // Kept for the plan's 30 days: nothing to prune.
    let listed = backups_of(&fleet, &slug).await;
    let expires = listed[0]["expires_at"].as_i64().unwrap();
    let created = listed[0]["created_at"].as_i64().unwrap();
    assert_eq!(expires - created, 30 * 24 * 3600 * 1000);
    assert_eq!(fleet.json(&["backups", "prune"]).await["pruned"], json!([]));
    // One past its retention: its key, files and row go, audited.
    fleet
        .registry_sql(&format!(
            "UPDATE backups SET expires_at = 1 WHERE id = '{}'",
            ids[0]
        ))
        .await;
    assert_eq!(
        fleet.json(&["backups", "prune"]).await["pruned"],
        json!([ids[0]])
    );
    assert!(fleet.secret(&format!("backup-{}", ids[0])).await.is_none());
    assert!(!fleet.data_path(&format!("backups/{}", ids[0])).exists());
    assert!(fleet.data_path(&format!("backups/{}", ids[1])).exists());
    let left = backups_of(&fleet, &slug).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], ids[1].as_str());
    let pruned = audit_events(&fleet, &slug, "BACKUP_PRUNED").await;
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0]["details"]["backup_id"], ids[0].as_str());
    fleet.assert_doctor_clean().await;
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge", "--no-backup"])
        .await
        .assert_ok();
    fleet.cleanup().await;
}
