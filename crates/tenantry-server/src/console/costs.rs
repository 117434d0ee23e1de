//! The costs page: the monthly chargeback of every billable tenant, with totals per plan, region and cost center
//! and the grand total, from the same report `GET /platform/costs` answers programs with.

use super::errors::{OrPage, PageError};
use super::layout::{
    empty_state, html_response, money, page_header, pill, query_escape, shell, Section, Viewer,
};
use crate::auth::Principal;
use crate::state::ServerState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};
use tenantry_workflows::{cost_report, CostTotal};

/// A group's name, or a muted dash for tenants without one (a cost center is a label some plans leave empty).
fn group_name(key: &str) -> Markup {
    html! {
        @if key.is_empty() { span.muted { "none" } } @else { (key) }
    }
}

/// One of the totals tables: a group per row, with its tenant count and monthly cost.
fn totals_table(title: &str, group_label: &str, totals: &[CostTotal], currency: &str) -> Markup {
    html! {
        section.cost-totals {
            h2 { (title) }
            div.table-wrap {
                table {
                    thead { tr { th { (group_label) } th.num { "Tenants" } th.num { "Per month" } } }
                    tbody {
                        @for total in totals {
                            tr {
                                td { (group_name(&total.key)) }
                                td.num { (total.tenants) }
                                td.num { (money(total.monthly_cost, currency)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /platform/costs` for a browser.
pub async fn costs_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let report = cost_report(&state.platform).await.or_page(&viewer)?;
    let currency = report.currency.as_str();
    let body = html! {
        (page_header(
            html! { "Costs" },
            Some(html! { "What each billable tenant (provisioning, active or suspended) costs per month, in " (currency) "." }),
            html! {},
        ))
        @if report.tenants.is_empty() {
            (empty_state("No billable tenants yet.", html! {
                "Costs appear here once a tenant is provisioned. "
                @if viewer.is_admin() {
                    a href="/platform/tenants/new" { "Provision a tenant" }
                    ", or from a shell: " code { "tenantry provision-tenant --slug acme --display-name \"Acme Health\" --admin-email admin@acme.example" }
                } @else {
                    "A platform admin provisions tenants."
                }
            }))
        } @else {
            div.panel.cost-summary {
                dl.details {
                    div { dt { "Total per month" } dd.cost-total { (money(report.total_monthly_cost, currency)) } }
                    div { dt { "Billable tenants" } dd { (report.tenants.len()) } }
                    div { dt { "Plans" } dd { (report.by_plan.len()) } }
                    div { dt { "Regions" } dd { (report.by_region.len()) } }
                }
            }
            div.cost-groups {
                (totals_table("By plan", "Plan", &report.by_plan, currency))
                (totals_table("By region", "Region", &report.by_region, currency))
                (totals_table("By cost center", "Cost center", &report.by_cost_center, currency))
            }
            h2 { "By tenant" }
            div.table-wrap {
                table.cost-tenants {
                    thead { tr {
                        th { "Tenant" } th { "Plan" } th.wide-only { "Region" } th.wide-only { "Cost center" }
                        th.wide-only { "Status" } th.num { "Per month" }
                    } }
                    tbody {
                        @for line in &report.tenants {
                            tr {
                                td { a href={ "/platform/tenants/" (query_escape(&line.tenant_slug)) } { (line.tenant_slug) } }
                                td { (line.plan) }
                                td.wide-only { (line.region) }
                                td.wide-only { (group_name(&line.cost_center)) }
                                td.wide-only { (pill(&line.status)) }
                                td.num { (money(line.monthly_cost, currency)) }
                            }
                        }
                    }
                    tfoot {
                        tr.total-row {
                            td colspan="2" { "Total" }
                            td.wide-only colspan="3" {}
                            td.num.cost-total { (money(report.total_monthly_cost, currency)) }
                        }
                    }
                }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        shell(Some(&viewer), Section::Costs, "Costs", body),
    ))
}
