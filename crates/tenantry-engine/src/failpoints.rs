//! Test failpoints at phase boundaries, compiled in only with the `failpoints` feature.
//!
//! `TENANTRY_FAILPOINTS="<phase>.<before|after|undo>=<exit|error|delay>,…"`: `exit` ends the process at once
//! with no cleanup (as kill -9 would), `error` fails the phase fatally so the job unwinds (at `undo`: the undo
//! fails, so the job ends `failed` with `E_PARTIAL_STATE`), `delay` holds the phase for two seconds (a slow
//! phase, so tests can act while a job is in flight).
//! `TENANTRY_REPEAT_STEPS=1` runs every apply and every undo twice in a row.

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

/// The action configured for this phase boundary, if any.
#[cfg(feature = "failpoints")]
pub(crate) fn configured(phase: &str, boundary: Boundary) -> Option<Action> {
    let spec = std::env::var("TENANTRY_FAILPOINTS").ok()?;
    let wanted = format!("{phase}.{}", boundary.as_str());
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
pub(crate) fn configured(_phase: &str, _boundary: Boundary) -> Option<Action> {
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
pub(crate) fn crash_now(phase: &str, boundary: Boundary) -> ! {
    eprintln!(
        "failpoint: exiting abruptly at {phase}.{}",
        boundary.as_str()
    );
    std::process::exit(137)
}
