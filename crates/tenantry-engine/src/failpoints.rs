//! Test failpoints at phase boundaries, and the phase error a failpoint inside a phase becomes. The points
//! themselves, and their actions, are `tenantry_core::failpoints` (compiled in only with the `failpoints`
//! feature).
//!
//! The runner checks the points `before`, `after` and `undo` around every phase. Workflows and providers name the
//! points inside a phase where a crash leaves what no boundary can (`database_created.claimed`: a claimed
//! warm-pool database whose phase is not recorded; `database_created.database_created`: a database made but not
//! yet opened). At `error` the phase fails fatally so the job unwinds (at `undo`: the undo fails, so the job ends
//! `failed` with `E_PARTIAL_STATE`). `TENANTRY_REPEAT_STEPS=1` runs every apply and every undo twice in a row.

use crate::workflow::PhaseError;
use tenantry_core::failpoints;
use tenantry_core::ErrorCode;

pub(crate) use failpoints::repeat_steps;

/// Where around a phase's apply a failpoint sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// Before the phase is marked running.
    Before,
    /// After apply returned, before the phase is recorded as applied.
    After,
    /// Before the phase's undo runs.
    Undo,
}

impl Boundary {
    pub fn as_str(self) -> &'static str {
        match self {
            Boundary::Before => "before",
            Boundary::After => "after",
            Boundary::Undo => "undo",
        }
    }
}

/// Acts on the failpoint configured for `point` of `phase`, if any; one set to `error` fails the phase fatally
/// (`E_FAILPOINT`). Without the `failpoints` feature this does nothing.
pub async fn check(phase: &str, point: &str) -> Result<(), PhaseError> {
    failpoints::check(phase, point)
        .await
        .map_err(|fired| PhaseError::fatal(ErrorCode::Failpoint, fired.to_string()))
}
