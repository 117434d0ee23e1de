//! Test failpoints at phase boundaries, compiled in only with the `failpoints` feature.
//!
//! `TENANTRY_FAILPOINTS="<phase>.<before|after>=<exit|error>,…"`: `exit` ends the process at once with no
//! cleanup (as kill -9 would), `error` fails the phase fatally so the job unwinds.

/// Where around a phase's apply a failpoint sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// Before the phase is marked running.
    Before,
    /// After apply returned, before the phase is recorded as applied.
    After,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) enum Action {
    Exit,
    Error,
}

/// The action configured for this phase boundary, if any.
#[cfg(feature = "failpoints")]
pub(crate) fn configured(phase: &str, boundary: Boundary) -> Option<Action> {
    let spec = std::env::var("TENANTRY_FAILPOINTS").ok()?;
    let wanted = format!(
        "{phase}.{}",
        match boundary {
            Boundary::Before => "before",
            Boundary::After => "after",
        }
    );
    spec.split(',').find_map(|entry| {
        let (point, action) = entry.trim().split_once('=')?;
        if point != wanted {
            return None;
        }
        match action {
            "exit" => Some(Action::Exit),
            "error" => Some(Action::Error),
            _ => None,
        }
    })
}

#[cfg(not(feature = "failpoints"))]
pub(crate) fn configured(_phase: &str, _boundary: Boundary) -> Option<Action> {
    None
}

/// Ends the process the way a crash would: no destructors, no flushing, no lease release.
pub(crate) fn crash_now(phase: &str, boundary: Boundary) -> ! {
    eprintln!("failpoint: exiting abruptly at {phase}.{boundary:?}");
    std::process::exit(137)
}
