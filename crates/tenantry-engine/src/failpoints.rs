//! Test failpoints at phase boundaries and at named points inside a phase, compiled in only with the `failpoints`
//! feature.
//!
//! `TENANTRY_FAILPOINTS="<phase>.<point>=<exit|error|delay>,…"`. The runner checks the points `before`, `after`
//! and `undo` around every phase. A workflow names the points inside a phase where a crash leaves what no
//! boundary can (a claimed warm-pool database whose secret is not written yet: `database_created.claimed`), and
//! checks them with [`check`]. `exit` ends the process at once with no cleanup (as kill -9 would), `error` fails
//! the phase fatally so the job unwinds (at `undo`: the undo fails, so the job ends `failed` with
//! `E_PARTIAL_STATE`), `delay` holds the phase for two seconds (a slow phase, so tests can act while a job is in
//! flight).
//! `TENANTRY_REPEAT_STEPS=1` runs every apply and every undo twice in a row.

use crate::workflow::PhaseError;
use tenantry_core::ErrorCode;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) enum Action {
    Exit,
    Error,
    Delay,
}

/// How long a `delay` failpoint holds a phase.
pub(crate) const DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// The action configured for this point of the phase, if any.
#[cfg(feature = "failpoints")]
pub(crate) fn configured(phase: &str, point: &str) -> Option<Action> {
    let spec = std::env::var("TENANTRY_FAILPOINTS").ok()?;
    let wanted = format!("{phase}.{point}");
    spec.split(',').find_map(|entry| {
        let (point, action) = entry.trim().split_once('=')?;
        if point != wanted {
            return None;
        }
        match action {
            "exit" => Some(Action::Exit),
            "error" => Some(Action::Error),
            "delay" => Some(Action::Delay),
            _ => None,
        }
    })
}

#[cfg(not(feature = "failpoints"))]
pub(crate) fn configured(_phase: &str, _point: &str) -> Option<Action> {
    None
}

/// Whether every apply and every undo should run twice in a row (`TENANTRY_REPEAT_STEPS=1`), so tests can
/// prove each step converges when repeated.
#[cfg(feature = "failpoints")]
pub(crate) fn repeat_steps() -> bool {
    std::env::var("TENANTRY_REPEAT_STEPS").is_ok_and(|value| value == "1")
}

#[cfg(not(feature = "failpoints"))]
pub(crate) fn repeat_steps() -> bool {
    false
}

/// Ends the process the way a crash would: no destructors, no flushing, no lease release.
fn crash_now(phase: &str, point: &str) -> ! {
    eprintln!("failpoint: exiting abruptly at {phase}.{point}");
    std::process::exit(137)
}

/// Acts on the failpoint configured for `point` of `phase`, if any: ends the process, fails the phase fatally, or
/// holds it for [`DELAY`]. Without the `failpoints` feature this does nothing.
pub async fn check(phase: &str, point: &str) -> Result<(), PhaseError> {
    match configured(phase, point) {
        Some(Action::Delay) => {
            tokio::time::sleep(DELAY).await;
            Ok(())
        }
        Some(Action::Exit) => crash_now(phase, point),
        Some(Action::Error) => Err(PhaseError::fatal(
            ErrorCode::Failpoint,
            format!("failpoint {phase}.{point} fired"),
        )),
        None => Ok(()),
    }
}
