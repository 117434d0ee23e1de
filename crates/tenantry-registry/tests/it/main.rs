//! The registry conformance suite: every case is written once and runs on both SQLite and PostgreSQL.
//!
//! A case is an `async fn case_xxx(registry: Registry) -> anyhow::Result<()>` in one of the modules below (the few
//! that must reopen the registry also take its `RegistryLocation`). `conformance_tests!` turns each into two tests,
//! `sqlite::case_xxx` and `postgres::case_xxx`, each on a fresh database that is removed afterwards.

mod approvals;
mod audit;
mod backups;
mod change_requests;
mod harness;
mod jobs;
mod leases;
mod outbox;
mod placement;
mod resources;
mod schema;
mod secrets;
mod servers;
mod tenants;

macro_rules! conformance_tests {
    (
        with_registry: [$($module:ident::$case:ident),* $(,)?],
        with_location: [$($location_module:ident::$location_case:ident),* $(,)?] $(,)?
    ) => {
        conformance_tests!(@backend sqlite, run_on_sqlite,
            [$($module::$case),*], [$($location_module::$location_case),*]);
        conformance_tests!(@backend postgres, run_on_postgres,
            [$($module::$case),*], [$($location_module::$location_case),*]);
    };
    (@backend $backend:ident, $runner:ident,
        [$($module:ident::$case:ident),*], [$($location_module:ident::$location_case:ident),*]
    ) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() -> anyhow::Result<()> {
                    crate::harness::$runner(|registry, _location| crate::$module::$case(registry)).await
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $location_case() -> anyhow::Result<()> {
                    crate::harness::$runner(crate::$location_module::$location_case).await
                }
            )*
        }
    };
}

conformance_tests! {
    with_registry: [
        servers::case_servers_add_get_and_list_sorted_by_name,
        servers::case_servers_duplicate_name_is_conflict_and_writes_nothing,
        servers::case_servers_unknown_name_is_not_found,
        servers::case_servers_set_status_changes_status_and_writes_audit,
        jobs::case_jobs_create_records_phases_in_order_and_job_created_audit,
        jobs::case_jobs_every_kind_is_stored_and_read_back,
        jobs::case_jobs_kind_schedule_gives_each_tenants_last_completion_and_the_live_count,
        jobs::case_jobs_second_live_job_for_slug_is_conflict_until_first_finishes,
        jobs::case_jobs_list_newest_first_with_filters,
        jobs::case_jobs_phase_status_and_logs_become_events_in_order,
        jobs::case_jobs_record_progress_writes_a_phase_end_in_one_transaction,
        jobs::case_jobs_record_progress_keeps_a_long_log_in_order,
        jobs::case_jobs_state_round_trips_json,
        jobs::case_jobs_finish_sets_status_error_tenant_status_and_audit,
        jobs::case_jobs_reopen_only_failed_or_rolled_back,
        leases::case_leases_claim_gives_fence_and_refuses_second_claim,
        leases::case_leases_expired_lease_is_taken_over_with_higher_token,
        leases::case_leases_renewal_keeps_lease,
        leases::case_leases_release_lets_another_worker_claim_at_once,
        leases::case_leases_stale_fence_is_refused_and_changes_nothing,
        leases::case_leases_job_created_leased_is_never_claimed_by_another,
        placement::case_placement_auto_picks_most_free_room_ties_by_name,
        placement::case_placement_counts_tenants_and_live_placed_provision_jobs,
        placement::case_placement_named_server_rules,
        placement::case_placement_twice_returns_same_server_and_clear_frees_room,
        placement::case_placement_concurrent_jobs_never_overbook,
        tenants::case_tenants_register_is_idempotent,
        tenants::case_tenants_register_on_unknown_server_is_conflict,
        tenants::case_tenants_remove_twice_is_fine,
        tenants::case_tenants_set_status_audits_only_changes,
        tenants::case_tenants_list_search_status_limit_offset,
        secrets::case_secrets_put_get_delete_and_list,
        outbox::case_outbox_invitation_queued_superseded_and_claimed_only_with_email,
        audit::case_audit_lists_newest_first_with_filters,
        audit::case_audit_filters_by_time,
        audit::case_audit_chain_concurrent_writers_make_one_valid_chain,
        approvals::case_approvals_waiting_job_is_not_claimed_until_another_admin_approves,
        approvals::case_approvals_concurrent_decisions_have_one_winner,
        approvals::case_approvals_rejection_and_lapse_cancel_with_their_codes,
        change_requests::case_change_requests_filed_listed_and_approved_with_their_job,
        change_requests::case_change_requests_approval_whose_job_conflicts_stays_pending,
        change_requests::case_change_requests_concurrent_decisions_have_one_winner,
        change_requests::case_change_requests_tenant_admin_is_stored_with_their_tenant,
        tenants::case_tenants_set_plan_changes_plan_labels_settings_with_audit,
        resources::case_resources_registered_with_the_tenant_and_forgotten_with_it,
        resources::case_resources_placement_by_engine_and_region_and_twice_is_the_same,
        resources::case_resources_concurrent_placements_never_overbook,
        backups::case_backups_written_by_their_job_listed_expired_and_deleted_with_audit,
    ],
    with_location: [
        schema::case_schema_migrates_on_open_and_reopen_is_a_noop,
        jobs::case_jobs_summary_of_the_last_day_by_plan_and_error_code,
        audit::case_audit_chain_names_edited_deleted_and_forged_events,
        audit::case_audit_chain_names_deleted_newest_events,
        audit::case_audit_chain_chains_events_written_before_it_existed,
    ],
}
