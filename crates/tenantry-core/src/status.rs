//! The stored status vocabularies of tenants, servers, jobs and phases. Their strings are API.

use crate::Error;
use std::fmt;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(raw: &str) -> Result<$name, Error> {
                match raw {
                    $($text => Ok($name::$variant),)+
                    other => Err(Error::invalid_input(format!(
                        concat!("{:?} is not a ", stringify!($name), "; expected one of: {}"),
                        other,
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// A tenant's life: pending → provisioning → active ⇄ suspended → offboarding → offboarded; failed when a job gave up.
    TenantStatus {
        Pending => "pending",
        Provisioning => "provisioning",
        Active => "active",
        Suspended => "suspended",
        Offboarding => "offboarding",
        Offboarded => "offboarded",
        Failed => "failed",
    }
);

string_enum!(
    /// Whether a server takes new tenants.
    ServerStatus {
        Active => "active",
        Draining => "draining",
        Inactive => "inactive",
    }
);

string_enum!(
    /// The kinds of durable job.
    JobKind {
        Provision => "provision",
        Offboard => "offboard",
        SetPlan => "set_plan",
        Reconcile => "reconcile",
        Rollout => "rollout",
        Suspend => "suspend",
        Resume => "resume",
        RotateCredentials => "rotate_credentials",
        Backup => "backup",
        Restore => "restore",
        Move => "move",
        Clone => "clone",
        RestoreInPlace => "restore_in_place",
    }
);

string_enum!(
    /// Where a job stands.
    JobStatus {
        Pending => "pending",
        AwaitingApproval => "awaiting_approval",
        InProgress => "in_progress",
        Complete => "complete",
        Failed => "failed",
        RolledBack => "rolled_back",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// Where one phase of a job stands.
    PhaseStatus {
        Pending => "pending",
        Running => "running",
        Applied => "applied",
        Failed => "failed",
        Undoing => "undoing",
        Undone => "undone",
        Skipped => "skipped",
    }
);

string_enum!(
    /// What a platform user may do. Deny by default: every route names the roles it allows. `TENANT_ADMIN` is
    /// scoped to one tenant (the user's `tenant_slug`): it reads that tenant and files change requests for it.
    PlatformRole {
        Admin => "PLATFORM_ADMIN",
        Support => "PLATFORM_SUPPORT",
        ReadOnly => "PLATFORM_READONLY",
        TenantAdmin => "TENANT_ADMIN",
    }
);

impl JobStatus {
    /// A terminal job is never picked up again by a worker.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Complete | JobStatus::Failed | JobStatus::RolledBack | JobStatus::Cancelled
        )
    }

    /// The statuses of a job that still holds its slug (no second job for the same tenant may start).
    pub const LIVE: [JobStatus; 3] = [
        JobStatus::Pending,
        JobStatus::AwaitingApproval,
        JobStatus::InProgress,
    ];
}
