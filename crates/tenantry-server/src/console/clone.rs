//! The tenant page's "Clone this tenant" form, and its post: the API's clone submission, then the job's page.

use super::layout::{Field, Viewer};
use super::tenants::{tenant_path, to_job_page};
use crate::api::backups::{submit_clone_from, CloneBody};
use crate::api::ApiForm;
use crate::auth::Principal;
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use tenantry_core::TenantStatus;
use tenantry_registry::TenantRecord;

/// "Clone this tenant" for an active tenant: the new slug, and optionally another plan, admin and name.
pub fn clone_form(viewer: &Viewer, tenant: &TenantRecord) -> Markup {
    let slug_field = Field {
        hint: Some(
            "3 to 40 characters: lower-case letters, digits and hyphens, starting with a letter.",
        ),
        autocomplete: Some("off"),
        required: true,
        ..Field::text("to_slug", "New slug", "")
    };
    let plan_field = Field {
        hint: Some("Empty: this tenant's plan. A plan whose engine differs is refused."),
        autocomplete: Some("off"),
        ..Field::text("plan", "Plan", "")
    };
    let admin_field = Field {
        hint: Some("Empty: this tenant's first admin. The clone gets an invitation of its own."),
        autocomplete: Some("off"),
        ..Field::text("admin_email", "First admin", "")
    };
    html! {
        @if tenant.status == TenantStatus::Active {
            details.clone-zone {
                summary { "Clone this tenant" }
                form.stack method="post" action={ (tenant_path(&tenant.slug)) "/clone" } {
                    (viewer.csrf_field())
                    p {
                        "A new tenant on the same server whose data is a copy of this one's at one instant, with its own "
                        "credentials, labels and first admin. This tenant keeps serving during the copy."
                    }
                    (slug_field.render())
                    (plan_field.render())
                    (admin_field.render())
                    div { button.primary type="submit" { "Clone" } }
                }
            }
        }
    }
}

/// The clone form's fields; an empty optional field means the source's value.
#[derive(Debug, Default, Deserialize)]
pub struct CloneFields {
    #[serde(default)]
    to_slug: String,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    admin_email: Option<String>,
}

fn given(field: Option<String>) -> Option<String> {
    field
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// `POST /platform/tenants/{slug}/clone` from the tenant page's form: submit the job, then go to its page.
pub async fn clone_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiForm(fields): ApiForm<CloneFields>,
) -> Response {
    let body = CloneBody {
        to_slug: fields.to_slug.trim().to_owned(),
        plan: given(fields.plan),
        admin_email: given(fields.admin_email),
        display_name: None,
    };
    let submitted = submit_clone_from(&state, &principal, &slug, &body).await;
    to_job_page(&state, &Viewer::new(&principal), submitted)
}
