//! Conformance cases for durable jobs: creation, the one-live-job-per-slug rule, events, state, finish and reopen,
//! and the summary of the last day the console's Jobs page charts.

use crate::harness::{
    add_postgres_server, audit_event, claimed_provision_job, count_audit, execute_behind_tenantry,
    new_job, register_tenant_on, wait_until_clock_passes, ProgressShortcuts, PHASES,
};
use anyhow::Context;
use tenantry_core::{JobKind, JobStatus, PhaseStatus, TenantStatus};
use tenantry_registry::{
    now_millis, AuditFilter, Error, EventKind, JobFilter, JobLogLine, PhaseTransition, Registry,
    RegistryLocation,
};

pub async fn case_jobs_create_records_phases_in_order_and_job_created_audit(
    registry: Registry,
) -> anyhow::Result<()> {
    let new = new_job(JobKind::Provision, "acme");
    let created = registry.create_job(&new).await?;
    assert_eq!(created.id, new.id);
    assert_eq!(created.kind, JobKind::Provision);
    assert_eq!(created.tenant_slug, "acme");
    assert_eq!(created.status, JobStatus::Pending);
    assert_eq!(created.params, new.params);
    assert_eq!(created.state, serde_json::json!({}));
    assert_eq!(created.actor, "alice");
    assert_eq!(created.placed_server, None);
    assert_eq!(
        (
            created.error_code.as_deref(),
            created.error_message.as_deref()
        ),
        (None, None)
    );
    assert_eq!(
        (created.lease_owner.as_deref(), created.lease_token),
        (None, 0)
    );
    assert_eq!((created.started_at, created.finished_at), (None, None));

    let phases: Vec<(i64, &str, PhaseStatus, i64)> = created
        .phases
        .iter()
        .map(|phase| {
            (
                phase.position,
                phase.name.as_str(),
                phase.status,
                phase.attempts,
            )
        })
        .collect();
    assert_eq!(
        phases,
        [
            (0, "reserve_slug", PhaseStatus::Pending, 0),
            (1, "place", PhaseStatus::Pending, 0),
            (2, "create_database", PhaseStatus::Pending, 0),
            (3, "register_tenant", PhaseStatus::Pending, 0),
        ]
    );
    assert_eq!(registry.get_job(&new.id).await?, created);

    let audit = registry
        .list_audit(&AuditFilter {
            event_type: Some("JOB_CREATED".to_owned()),
            ..Default::default()
        })
        .await?;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "alice");
    assert_eq!(audit[0].tenant_slug.as_deref(), Some("acme"));
    assert_eq!(audit[0].job_id.as_deref(), Some(new.id.as_str()));
    assert_eq!(audit[0].details, serde_json::json!({ "kind": "provision" }));

    let live = registry
        .live_job_for_slug("acme")
        .await?
        .context("acme has a live job")?;
    assert_eq!(live.id, new.id);
    assert!(registry.live_job_for_slug("globex").await?.is_none());
    let missing = registry.get_job("no-such-job").await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "expected NotFound, got {missing:?}"
    );
    Ok(())
}

pub async fn case_jobs_second_live_job_for_slug_is_conflict_until_first_finishes(
    registry: Registry,
) -> anyhow::Result<()> {
    let (first, fence) = claimed_provision_job(&registry, "acme").await?;
    let second = registry
        .create_job(&new_job(JobKind::Offboard, "acme"))
        .await;
    assert!(
        matches!(second, Err(Error::Conflict { .. })),
        "expected Conflict, got {second:?}"
    );
    assert_eq!(
        count_audit(&registry, "JOB_CREATED", Some("acme")).await?,
        1
    );

    // Reusing a job id is refused as well, even for another slug.
    let mut reused_id = new_job(JobKind::Provision, "globex");
    reused_id.id = first.id.clone();
    let reused = registry.create_job(&reused_id).await;
    assert!(
        matches!(reused, Err(Error::Conflict { .. })),
        "expected Conflict, got {reused:?}"
    );
    assert!(registry.live_job_for_slug("globex").await?.is_none());
    registry
        .create_job(&new_job(JobKind::Provision, "globex"))
        .await?;

    registry
        .finish_job(&fence, JobStatus::Complete, None, None, &[])
        .await?;
    assert!(registry.live_job_for_slug("acme").await?.is_none());
    let after_finish = registry
        .create_job(&new_job(JobKind::Offboard, "acme"))
        .await?;
    let live = registry
        .live_job_for_slug("acme")
        .await?
        .context("acme has a live job again")?;
    assert_eq!(live.id, after_finish.id);
    assert_eq!(
        count_audit(&registry, "JOB_CREATED", Some("acme")).await?,
        2
    );
    Ok(())
}

pub async fn case_jobs_list_newest_first_with_filters(registry: Registry) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    for slug in ["acme", "globex", "initech"] {
        let job = registry
            .create_job(&new_job(JobKind::Provision, slug))
            .await?;
        wait_until_clock_passes(job.created_at).await?;
        ids.push(job.id);
    }
    let listed_ids = |filter: JobFilter| {
        let registry = registry.clone();
        async move {
            let jobs = registry.list_jobs(&filter).await?;
            anyhow::Ok(jobs.into_iter().map(|job| job.id).collect::<Vec<_>>())
        }
    };
    assert_eq!(
        listed_ids(JobFilter::default()).await?,
        [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]
    );
    let limited = JobFilter {
        limit: 2,
        ..Default::default()
    };
    assert_eq!(
        listed_ids(limited).await?,
        [ids[2].as_str(), ids[1].as_str()]
    );
    let for_globex = JobFilter {
        tenant_slug: Some("globex".to_owned()),
        ..Default::default()
    };
    assert_eq!(listed_ids(for_globex).await?, [ids[1].as_str()]);

    registry
        .claim_job(&ids[0], "worker-1", 60_000, None)
        .await?;
    let in_progress = JobFilter {
        status: Some(JobStatus::InProgress),
        ..Default::default()
    };
    assert_eq!(listed_ids(in_progress).await?, [ids[0].as_str()]);
    let pending = JobFilter {
        status: Some(JobStatus::Pending),
        ..Default::default()
    };
    assert_eq!(
        listed_ids(pending).await?,
        [ids[2].as_str(), ids[1].as_str()]
    );

    let listed = registry.list_jobs(&JobFilter::default()).await?;
    assert!(listed.iter().all(|job| job.phases.len() == PHASES.len()));
    // Each listed job carries its own phases, in order, as reading it alone would give.
    for job in &listed {
        assert_eq!(job.phases, registry.get_job(&job.id).await?.phases);
        let names: Vec<&str> = job.phases.iter().map(|phase| phase.name.as_str()).collect();
        assert_eq!(names, PHASES);
    }
    Ok(())
}

/// A job event without its id and time: kind, phase, status, level and message.
type EventSummary<'a> = (
    EventKind,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    &'a str,
);

pub async fn case_jobs_phase_status_and_logs_become_events_in_order(
    registry: Registry,
) -> anyhow::Result<()> {
    let (job, fence) = claimed_provision_job(&registry, "acme").await?;
    let (other_job, other_fence) = claimed_provision_job(&registry, "globex").await?;

    registry
        .set_phase_status(&fence, 0, PhaseStatus::Running, "reserving the slug")
        .await?;
    registry
        .append_job_log(&other_fence, None, "info", "another job's line")
        .await?;
    registry
        .append_job_log(&fence, Some("reserve_slug"), "info", "slug reserved")
        .await?;
    registry
        .set_phase_status(&fence, 0, PhaseStatus::Applied, "reserved")
        .await?;
    registry
        .set_phase_status(&fence, 1, PhaseStatus::Running, "placing")
        .await?;
    registry
        .append_job_log(&fence, None, "warn", "the server is slow")
        .await?;

    let events = registry.job_events(&job.id, 0).await?;
    let summary: Vec<EventSummary> = events
        .iter()
        .map(|event| {
            (
                event.kind,
                event.phase.as_deref(),
                event.status.as_deref(),
                event.level.as_str(),
                event.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                EventKind::Phase,
                Some("reserve_slug"),
                Some("running"),
                "info",
                "reserving the slug"
            ),
            (
                EventKind::Log,
                Some("reserve_slug"),
                None,
                "info",
                "slug reserved"
            ),
            (
                EventKind::Phase,
                Some("reserve_slug"),
                Some("applied"),
                "info",
                "reserved"
            ),
            (
                EventKind::Phase,
                Some("place"),
                Some("running"),
                "info",
                "placing"
            ),
            (EventKind::Log, None, None, "warn", "the server is slow"),
        ]
    );
    assert!(events.iter().all(|event| event.job_id == job.id));
    assert!(events
        .windows(2)
        .all(|pair| pair[0].id < pair[1].id && pair[0].at <= pair[1].at));

    let after_second: Vec<i64> = registry
        .job_events(&job.id, events[1].id)
        .await?
        .iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(after_second, [events[2].id, events[3].id, events[4].id]);
    assert!(registry.job_events(&job.id, events[4].id).await?.is_empty());
    let other_events = registry.job_events(&other_job.id, 0).await?;
    assert_eq!(other_events.len(), 1);
    assert_eq!(other_events[0].message, "another job's line");

    let phases = registry.get_job(&job.id).await?.phases;
    assert_eq!(
        (phases[0].status, phases[0].attempts),
        (PhaseStatus::Applied, 1)
    );
    assert!(phases[0].started_at.is_some() && phases[0].finished_at.is_some());
    assert_eq!(
        (phases[1].status, phases[1].attempts),
        (PhaseStatus::Running, 1)
    );
    assert!(phases[1].started_at.is_some() && phases[1].finished_at.is_none());
    assert_eq!(
        (phases[2].status, phases[2].attempts),
        (PhaseStatus::Pending, 0)
    );

    // Running a phase again counts another attempt.
    registry
        .set_phase_status(&fence, 1, PhaseStatus::Running, "placing again")
        .await?;
    assert_eq!(registry.get_job(&job.id).await?.phases[1].attempts, 2);

    // A phase that does not exist is an error, and its event is not written.
    let n_events = registry.job_events(&job.id, 0).await?.len();
    let missing_phase = registry
        .set_phase_status(&fence, 99, PhaseStatus::Running, "no such phase")
        .await;
    assert!(
        matches!(missing_phase, Err(Error::NotFound { .. })),
        "expected NotFound, got {missing_phase:?}"
    );
    assert_eq!(registry.job_events(&job.id, 0).await?.len(), n_events);
    Ok(())
}

/// The runner's one write per phase: the phase's log lines (with the times they were logged), then the phase
/// applied and the next running, then the state, all or nothing, and only under the job's current lease.
pub async fn case_jobs_record_progress_writes_a_phase_end_in_one_transaction(
    registry: Registry,
) -> anyhow::Result<()> {
    let (job, fence) = claimed_provision_job(&registry, "acme").await?;
    registry
        .set_phase_status(&fence, 0, PhaseStatus::Running, "started")
        .await?;
    let logged_at = 1_000;
    let line = JobLogLine {
        at: logged_at,
        phase: Some(PHASES[0].to_owned()),
        level: "info".into(),
        message: "slug reserved".into(),
    };
    let transitions = [
        PhaseTransition {
            position: 0,
            status: PhaseStatus::Applied,
            message: "applied in 3 ms".into(),
        },
        PhaseTransition {
            position: 1,
            status: PhaseStatus::Running,
            message: "started".into(),
        },
    ];
    let state = serde_json::json!({ "checks": [{ "name": "tenant_login", "status": "passed" }] });
    registry
        .record_progress(
            &fence,
            std::slice::from_ref(&line),
            &transitions,
            Some(&state),
        )
        .await?;

    let recorded = registry.get_job(&job.id).await?;
    assert_eq!(recorded.state, state);
    let statuses: Vec<PhaseStatus> = recorded.phases.iter().map(|phase| phase.status).collect();
    assert_eq!(
        statuses[..3],
        [
            PhaseStatus::Applied,
            PhaseStatus::Running,
            PhaseStatus::Pending
        ]
    );
    assert_eq!(recorded.phases[1].attempts, 1);
    let events = registry.job_events(&job.id, 0).await?;
    let tail: Vec<(EventKind, Option<&str>, &str, i64)> = events[events.len() - 3..]
        .iter()
        .map(|event| {
            (
                event.kind,
                event.status.as_deref(),
                event.message.as_str(),
                event.at,
            )
        })
        .collect();
    assert_eq!(tail[0], (EventKind::Log, None, "slug reserved", logged_at));
    assert_eq!(
        (tail[1].0, tail[1].1, tail[1].2),
        (EventKind::Phase, Some("applied"), "applied in 3 ms")
    );
    assert_eq!(
        (tail[2].0, tail[2].1, tail[2].2),
        (EventKind::Phase, Some("running"), "started")
    );

    // A transition that cannot apply (no such phase) takes the log line and the state down with it.
    let n_events = events.len();
    let failed = registry
        .record_progress(
            &fence,
            std::slice::from_ref(&line),
            &[PhaseTransition {
                position: 99,
                status: PhaseStatus::Applied,
                message: "no such phase".into(),
            }],
            Some(&serde_json::json!({ "lost": true })),
        )
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(registry.job_events(&job.id, 0).await?.len(), n_events);
    assert_eq!(registry.get_job(&job.id).await?.state, state);
    Ok(())
}

/// A phase that logs more lines than one statement carries (the writer splits them): every line is kept, in order,
/// with its own time, and the phase's transitions come after them.
pub async fn case_jobs_record_progress_keeps_a_long_log_in_order(
    registry: Registry,
) -> anyhow::Result<()> {
    let (job, fence) = claimed_provision_job(&registry, "acme").await?;
    let n_before = registry.job_events(&job.id, 0).await?.len();
    let lines: Vec<JobLogLine> = (0..600)
        .map(|index| JobLogLine {
            at: 10_000 + index,
            phase: Some(PHASES[0].to_owned()),
            level: "info".into(),
            message: format!("line {index}"),
        })
        .collect();
    registry
        .record_progress(
            &fence,
            &lines,
            &[PhaseTransition {
                position: 0,
                status: PhaseStatus::Running,
                message: "started".into(),
            }],
            None,
        )
        .await?;
    let events = registry.job_events(&job.id, 0).await?;
    let written = &events[n_before..];
    assert_eq!(written.len(), lines.len() + 1);
    for (event, line) in written.iter().zip(&lines) {
        assert_eq!(
            (event.kind, event.message.as_str(), event.at),
            (EventKind::Log, line.message.as_str(), line.at)
        );
    }
    let last = &written[lines.len()];
    assert_eq!(
        (last.kind, last.status.as_deref(), last.phase.as_deref()),
        (EventKind::Phase, Some("running"), Some(PHASES[0]))
    );
    Ok(())
}

pub async fn case_jobs_state_round_trips_json(registry: Registry) -> anyhow::Result<()> {
    let (job, fence) = claimed_provision_job(&registry, "acme").await?;
    let state = serde_json::json!({
        "database": { "name": "t_acme", "port": 5432, "owner": null },
        "steps": [1, 2.5, -3, true, false, "three"],
        "note": "ünïcødé \"quoted\"\nsecond line\ttab",
        "largest": i64::MAX,
        "empty": {},
    });
    registry.set_job_state(&fence, &state).await?;
    assert_eq!(registry.get_job(&job.id).await?.state, state);

    // The state is replaced, not merged.
    let replacement = serde_json::json!({ "only": [] });
    registry.set_job_state(&fence, &replacement).await?;
    assert_eq!(registry.get_job(&job.id).await?.state, replacement);
    Ok(())
}

pub async fn case_jobs_finish_sets_status_error_tenant_status_and_audit(
    registry: Registry,
) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 10).await?;
    let (failing_job, failing_fence) = claimed_provision_job(&registry, "acme").await?;
    register_tenant_on(&registry, &failing_fence, "acme", "pg-a").await?;
    let before_finish = tenantry_registry::now_millis();
    registry
        .finish_job(
            &failing_fence,
            JobStatus::Failed,
            Some(("E_NO_CAPACITY", "every server is full")),
            Some(TenantStatus::Failed),
            &[
                audit_event(
                    "worker-1",
                    "PROVISION_FAILED",
                    Some("acme"),
                    Some(&failing_job.id),
                ),
                audit_event("worker-1", "TENANT_FAILED", Some("acme"), None),
            ],
        )
        .await?;

    let failed = registry.get_job(&failing_job.id).await?;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("E_NO_CAPACITY"));
    assert_eq!(
        failed.error_message.as_deref(),
        Some("every server is full")
    );
    assert!(failed
        .finished_at
        .is_some_and(|finished_at| finished_at >= before_finish));
    assert_eq!((failed.lease_owner, failed.lease_expires_at), (None, None));
    // A finished job takes no more writes from the worker that finished it.
    let late_write = registry
        .append_job_log(&failing_fence, None, "info", "late")
        .await;
    assert!(
        matches!(late_write, Err(tenantry_registry::Error::Fenced { .. })),
        "{late_write:?}"
    );
    let tenant = registry.require_tenant("acme").await?;
    assert_eq!(tenant.status, TenantStatus::Failed);
    assert!(tenant.updated_at >= before_finish);

    let audit = registry
        .list_audit(&AuditFilter {
            tenant_slug: Some("acme".to_owned()),
            ..Default::default()
        })
        .await?;
    let audit_types: Vec<&str> = audit
        .iter()
        .map(|event| event.event_type.as_str())
        .collect();
    assert_eq!(
        audit_types,
        [
            "TENANT_FAILED",
            "PROVISION_FAILED",
            "TENANT_REGISTERED",
            "JOB_CREATED"
        ]
    );
    assert_eq!(audit[1].job_id.as_deref(), Some(failing_job.id.as_str()));
    assert_eq!(
        audit[1].details,
        serde_json::json!({ "reason": "PROVISION_FAILED by worker-1" })
    );

    let events = registry.job_events(&failing_job.id, 0).await?;
    let last = events.last().context("finish_job writes a job event")?;
    assert_eq!(
        (last.kind, last.message.as_str()),
        (
            EventKind::Log,
            "job failed: E_NO_CAPACITY: every server is full"
        )
    );
    assert!(registry.live_job_for_slug("acme").await?.is_none());
    assert_eq!(
        registry
            .claim_job(&failing_job.id, "worker-2", 60_000, None)
            .await?,
        None
    );

    let (completing_job, completing_fence) = claimed_provision_job(&registry, "globex").await?;
    register_tenant_on(&registry, &completing_fence, "globex", "pg-a").await?;
    registry
        .finish_job(
            &completing_fence,
            JobStatus::Complete,
            None,
            Some(TenantStatus::Active),
            &[],
        )
        .await?;
    let complete = registry.get_job(&completing_job.id).await?;
    assert_eq!(complete.status, JobStatus::Complete);
    assert_eq!((complete.error_code, complete.error_message), (None, None));
    assert_eq!(
        registry.require_tenant("globex").await?.status,
        TenantStatus::Active
    );
    // The other tenant was not touched by this job's finish.
    assert_eq!(
        registry.require_tenant("acme").await?.status,
        TenantStatus::Failed
    );
    let last = registry.job_events(&completing_job.id, 0).await?;
    assert_eq!(
        last.last().map(|event| event.message.as_str()),
        Some("job complete")
    );
    Ok(())
}

pub async fn case_jobs_reopen_only_failed_or_rolled_back(registry: Registry) -> anyhow::Result<()> {
    let pending = registry
        .create_job(&new_job(JobKind::Provision, "pending-co"))
        .await?;
    let reopened_pending = registry
        .reopen_job(
            &pending.id,
            "ops",
            "JOB_RETRIED",
            &serde_json::json!({}),
            true,
        )
        .await;
    assert!(
        matches!(reopened_pending, Err(Error::NotFound { .. })),
        "got {reopened_pending:?}"
    );

    let (failed_job, fence) = claimed_provision_job(&registry, "acme").await?;
    let reopened_running = registry
        .reopen_job(
            &failed_job.id,
            "ops",
            "JOB_RETRIED",
            &serde_json::json!({}),
            true,
        )
        .await;
    assert!(
        matches!(reopened_running, Err(Error::NotFound { .. })),
        "got {reopened_running:?}"
    );

    registry
        .set_phase_status(&fence, 0, PhaseStatus::Applied, "")
        .await?;
    registry
        .set_phase_status(&fence, 1, PhaseStatus::Skipped, "")
        .await?;
    registry
        .set_phase_status(&fence, 2, PhaseStatus::Failed, "")
        .await?;
    registry
        .set_job_state(&fence, &serde_json::json!({ "attempt": 1 }))
        .await?;
    registry
        .finish_job(
            &fence,
            JobStatus::Failed,
            Some(("E_INTERNAL", "boom")),
            None,
            &[],
        )
        .await?;
    let retried = registry
        .reopen_job(
            &failed_job.id,
            "ops",
            "JOB_RETRIED",
            &serde_json::json!({ "attempt": 2 }),
            true,
        )
        .await?;
    assert_eq!(retried.status, JobStatus::InProgress);
    assert_eq!(
        (
            retried.error_code,
            retried.error_message,
            retried.finished_at
        ),
        (None, None, None)
    );
    assert_eq!(
        (retried.lease_owner, retried.lease_expires_at),
        (None, None)
    );
    assert_eq!(retried.state, serde_json::json!({ "attempt": 2 }));
    let phase_statuses: Vec<PhaseStatus> =
        retried.phases.iter().map(|phase| phase.status).collect();
    assert_eq!(
        phase_statuses,
        [
            PhaseStatus::Applied,
            PhaseStatus::Skipped,
            PhaseStatus::Pending,
            PhaseStatus::Pending
        ]
    );
    let audit = registry
        .list_audit(&AuditFilter {
            event_type: Some("JOB_RETRIED".to_owned()),
            ..Default::default()
        })
        .await?;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "ops");
    assert_eq!(audit[0].tenant_slug.as_deref(), Some("acme"));
    assert_eq!(audit[0].job_id.as_deref(), Some(failed_job.id.as_str()));
    let reclaimed = registry
        .claim_job(&failed_job.id, "worker-2", 60_000, None)
        .await?
        .context("a reopened job is claimable")?;
    assert!(reclaimed.token > fence.token);

    // A completed job stays completed.
    registry
        .finish_job(&reclaimed, JobStatus::Complete, None, None, &[])
        .await?;
    let reopened_complete = registry
        .reopen_job(
            &failed_job.id,
            "ops",
            "JOB_RETRIED",
            &serde_json::json!({}),
            true,
        )
        .await;
    assert!(
        matches!(reopened_complete, Err(Error::NotFound { .. })),
        "got {reopened_complete:?}"
    );
    assert_eq!(
        registry.get_job(&failed_job.id).await?.status,
        JobStatus::Complete
    );

    // A rolled-back job reopens too; without the reset its phases keep their statuses.
    let (rolled_back_job, rolled_back_fence) = claimed_provision_job(&registry, "globex").await?;
    registry
        .set_phase_status(&rolled_back_fence, 0, PhaseStatus::Undone, "")
        .await?;
    registry
        .finish_job(
            &rolled_back_fence,
            JobStatus::RolledBack,
            Some(("E_INTERNAL", "undone")),
            None,
            &[],
        )
        .await?;
    let rolled_forward = registry
        .reopen_job(
            &rolled_back_job.id,
            "ops",
            "JOB_ROLLED_FORWARD",
            &serde_json::json!({}),
            false,
        )
        .await?;
    assert_eq!(rolled_forward.status, JobStatus::InProgress);
    assert_eq!(rolled_forward.phases[0].status, PhaseStatus::Undone);
    assert_eq!(
        count_audit(&registry, "JOB_ROLLED_FORWARD", Some("globex")).await?,
        1
    );

    // A failed job cannot come back while another job holds its slug, and stays failed.
    let (blocked_job, blocked_fence) = claimed_provision_job(&registry, "initech").await?;
    registry
        .finish_job(
            &blocked_fence,
            JobStatus::Failed,
            Some(("E_INTERNAL", "boom")),
            None,
            &[],
        )
        .await?;
    registry
        .create_job(&new_job(JobKind::Offboard, "initech"))
        .await?;
    let blocked = registry
        .reopen_job(
            &blocked_job.id,
            "ops",
            "JOB_RETRIED",
            &serde_json::json!({}),
            true,
        )
        .await;
    assert!(
        matches!(blocked, Err(Error::Conflict { .. })),
        "expected Conflict, got {blocked:?}"
    );
    assert_eq!(
        registry.get_job(&blocked_job.id).await?.status,
        JobStatus::Failed
    );
    assert_eq!(
        count_audit(&registry, "JOB_RETRIED", Some("initech")).await?,
        0
    );

    let unknown = registry
        .reopen_job(
            "no-such-job",
            "ops",
            "JOB_RETRIED",
            &serde_json::json!({}),
            true,
        )
        .await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "got {unknown:?}"
    );
    Ok(())
}

/// Every job kind (suspend and resume among them) is stored as its name and read back as itself.
pub async fn case_jobs_every_kind_is_stored_and_read_back(
    registry: Registry,
) -> anyhow::Result<()> {
    for (index, kind) in JobKind::ALL.iter().enumerate() {
        // One live job per slug: a slug per kind.
        let created = registry
            .create_job(&new_job(*kind, &format!("kind-{index}")))
            .await?;
        assert_eq!(registry.get_job(&created.id).await?.kind, *kind);
    }
    let listed = registry
        .list_jobs(&JobFilter {
            tenant_slug: None,
            status: None,
            limit: 100,
        })
        .await?;
    assert_eq!(listed.len(), JobKind::ALL.len());
    Ok(())
}

/// The rotation schedule's one read: per tenant, the newest completed job of the kind (not a failed one, nor
/// another kind's), and how many of the kind are unfinished.
pub async fn case_jobs_kind_schedule_gives_each_tenants_last_completion_and_the_live_count(
    registry: Registry,
) -> anyhow::Result<()> {
    let rotate = JobKind::RotateCredentials;
    let first = finished_job(
        &registry,
        rotate,
        "acme",
        "starter",
        JobStatus::Complete,
        None,
    )
    .await?;
    let second = finished_job(
        &registry,
        rotate,
        "acme",
        "starter",
        JobStatus::Complete,
        None,
    )
    .await?;
    finished_job(
        &registry,
        rotate,
        "globex",
        "starter",
        JobStatus::RolledBack,
        Some("E_FAILPOINT"),
    )
    .await?;
    finished_job(
        &registry,
        JobKind::Suspend,
        "initech",
        "starter",
        JobStatus::Complete,
        None,
    )
    .await?;
    registry.create_job(&new_job(rotate, "umbrella")).await?;
    let (last, n_live) = registry.job_kind_schedule(rotate).await?;
    let mut finished = Vec::new();
    for id in [&first, &second] {
        finished.push(
            registry
                .get_job(id)
                .await?
                .finished_at
                .context("finished")?,
        );
    }
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last.get("acme").copied(), finished.into_iter().max());
    assert_eq!(n_live, 1);
    Ok(())
}

/// Creates a job of `kind` for `tenant_slug` on `plan`, claims it and finishes it with `status` and `error_code`.
async fn finished_job(
    registry: &Registry,
    kind: JobKind,
    tenant_slug: &str,
    plan: &str,
    status: JobStatus,
    error_code: Option<&str>,
) -> anyhow::Result<String> {
    let mut job = new_job(kind, tenant_slug);
    job.plan = Some(plan.to_owned());
    let job = registry.create_job(&job).await?;
    let fence = registry
        .claim_job(&job.id, "worker-1", 60_000, None)
        .await?
        .context("a new job must be claimable")?;
    registry
        .finish_job(
            &fence,
            status,
            error_code.map(|code| (code, "it went wrong")),
            None,
            &[],
        )
        .await?;
    Ok(job.id)
}

pub async fn case_jobs_summary_of_the_last_day_by_plan_and_error_code(
    registry: Registry,
    location: RegistryLocation,
) -> anyhow::Result<()> {
    let provision = JobKind::Provision;
    for (slug, plan, status, error_code) in [
        ("fast-1", "starter", JobStatus::Complete, None),
        ("fast-2", "starter", JobStatus::Complete, None),
        ("big-1", "pro", JobStatus::Complete, None),
        (
            "broken-1",
            "starter",
            JobStatus::RolledBack,
            Some("E_FAILPOINT"),
        ),
        (
            "broken-2",
            "pro",
            JobStatus::RolledBack,
            Some("E_FAILPOINT"),
        ),
        (
            "broken-3",
            "pro",
            JobStatus::Failed,
            Some("E_PARTIAL_STATE"),
        ),
        // A decision, not a failure.
        (
            "refused",
            "pro",
            JobStatus::Cancelled,
            Some("E_APPROVAL_REJECTED"),
        ),
        // Finished two days ago: outside the window.
        ("old", "starter", JobStatus::Complete, None),
        (
            "old-broken",
            "starter",
            JobStatus::RolledBack,
            Some("E_NO_CAPACITY"),
        ),
    ] {
        finished_job(&registry, provision, slug, plan, status, error_code).await?;
    }
    // Another kind is left out.
    finished_job(
        &registry,
        JobKind::Offboard,
        "gone",
        "starter",
        JobStatus::RolledBack,
        Some("E_NO_CAPACITY"),
    )
    .await?;
    // Durations the case can state, set as if each job had run that long.
    for (slug, millis) in [
        ("fast-1", 1_500),
        ("fast-2", 500),
        ("big-1", 9_000),
        ("old", 1),
    ] {
        execute_behind_tenantry(
            &location,
            &format!(
                "UPDATE jobs SET started_at = finished_at - {millis} WHERE tenant_slug = '{slug}'"
            ),
        )
        .await?;
    }
    let day_millis = 24 * 60 * 60 * 1000;
    execute_behind_tenantry(
        &location,
        &format!(
            "UPDATE jobs SET finished_at = finished_at - {}, started_at = started_at - {} \
             WHERE tenant_slug IN ('old', 'old-broken')",
            2 * day_millis,
            2 * day_millis
        ),
    )
    .await?;

    let since = now_millis() - day_millis;
    assert_eq!(
        registry.completed_job_durations(provision, since).await?,
        vec![
            ("pro".to_owned(), 9_000),
            ("starter".to_owned(), 500),
            ("starter".to_owned(), 1_500),
        ]
    );
    assert_eq!(
        registry.failure_counts_since(provision, since).await?,
        vec![
            ("E_FAILPOINT".to_owned(), 2),
            ("E_PARTIAL_STATE".to_owned(), 1)
        ]
    );
    // Nothing finished after now.
    let later = now_millis() + 60_000;
    assert!(registry
        .completed_job_durations(provision, later)
        .await?
        .is_empty());
    assert!(registry
        .failure_counts_since(provision, later)
        .await?
        .is_empty());
    Ok(())
}
