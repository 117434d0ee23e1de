//! Test failpoints: named points where a test build can crash, fail, slow down or hold still, read from
//! `TENANTRY_FAILPOINTS`. The actions are taken only with the `failpoints` feature; without it [`check`] does
//! nothing and reads nothing.
//!
//! `TENANTRY_FAILPOINTS="<phase>.<point>=<action>,…"` with the actions:
//! - `exit`: the process ends at once with status 137 and no cleanup, as `kill -9` would leave it;
//! - `error`: the step fails ([`Fired`]); the caller turns it into a fatal phase error;
//! - `delay`: the step waits two seconds (a slow step, so a test can act while a job is in flight);
//! - `stall:<path>`: the step creates `<path>.reached`, then waits until the file `<path>` exists, so a test
//!   can hold a process at an exact point (stop it there, let its lease expire, let another worker take over)
//!   and release it when it chooses.
//!
//! It lives here, in the crate every other one depends on, so that the runtime (around phases) and the providers
//! (between the statements of one phase) name their points the same way without depending on each other.

/// A failpoint set to `error` fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// `<phase>.<point>`.
    pub point: String,
}

impl std::fmt::Display for Fired {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "failpoint {} fired", self.point)
    }
}

impl std::error::Error for Fired {}

/// What a configured failpoint does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Exit,
    Error,
    Delay,
    /// Wait until this file exists.
    Stall(std::path::PathBuf),
}

/// How long a `delay` failpoint holds a step.
pub const DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// How often a stalled step looks for its release file.
#[cfg(feature = "failpoints")]
const STALL_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The action `spec` (the value of `TENANTRY_FAILPOINTS`) sets for `<phase>.<point>`, if any.
pub fn parse(spec: &str, phase: &str, point: &str) -> Option<Action> {
    let wanted = format!("{phase}.{point}");
    spec.split(',').find_map(|entry| {
        let (name, action) = entry.trim().split_once('=')?;
        if name != wanted {
            return None;
        }
        match action {
            "exit" => Some(Action::Exit),
            "error" => Some(Action::Error),
            "delay" => Some(Action::Delay),
            _ => action
                .strip_prefix("stall:")
                .filter(|path| !path.is_empty())
                .map(|path| Action::Stall(path.into())),
        }
    })
}

/// The action configured for this point, if any (always `None` without the `failpoints` feature).
#[cfg(feature = "failpoints")]
pub fn configured(phase: &str, point: &str) -> Option<Action> {
    parse(&std::env::var("TENANTRY_FAILPOINTS").ok()?, phase, point)
}

#[cfg(not(feature = "failpoints"))]
pub fn configured(_phase: &str, _point: &str) -> Option<Action> {
    None
}

/// Whether every apply and every undo should run twice in a row (`TENANTRY_REPEAT_STEPS=1`, failpoints builds
/// only), so tests can prove each step converges when repeated.
pub fn repeat_steps() -> bool {
    cfg!(feature = "failpoints")
        && std::env::var("TENANTRY_REPEAT_STEPS").is_ok_and(|value| value == "1")
}

/// Acts on the failpoint configured for `<phase>.<point>`: ends the process, returns [`Fired`], waits, or stalls
/// until released. Without the `failpoints` feature this does nothing.
#[cfg(feature = "failpoints")]
pub async fn check(phase: &str, point: &str) -> Result<(), Fired> {
    match configured(phase, point) {
        None => Ok(()),
        Some(Action::Exit) => {
            eprintln!("failpoint: exiting abruptly at {phase}.{point}");
            std::process::exit(137)
        }
        Some(Action::Error) => Err(Fired {
            point: format!("{phase}.{point}"),
        }),
        Some(Action::Delay) => {
            tokio::time::sleep(DELAY).await;
            Ok(())
        }
        Some(Action::Stall(release)) => {
            let mut reached = release.clone().into_os_string();
            reached.push(".reached");
            if let Err(error) = std::fs::write(&reached, format!("{}\n", std::process::id())) {
                eprintln!("failpoint: cannot announce the stall at {phase}.{point}: {error}");
            }
            eprintln!(
                "failpoint: stalled at {phase}.{point} until {} exists",
                release.display()
            );
            while !release.exists() {
                tokio::time::sleep(STALL_POLL).await;
            }
            eprintln!("failpoint: released at {phase}.{point}");
            Ok(())
        }
    }
}

#[cfg(not(feature = "failpoints"))]
pub async fn check(_phase: &str, _point: &str) -> Result<(), Fired> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_by_exact_point() {
        let spec =
            "database_created.opened=exit, database_created.before=stall:/tmp/release,x.y=bogus";
        assert_eq!(
            parse(spec, "database_created", "opened"),
            Some(Action::Exit)
        );
        assert_eq!(
            parse(spec, "database_created", "before"),
            Some(Action::Stall("/tmp/release".into()))
        );
        assert_eq!(parse(spec, "database_created", "open"), None);
        assert_eq!(parse(spec, "x", "y"), None);
        assert_eq!(parse("a.b=stall:", "a", "b"), None);
        assert_eq!(parse("a.b=delay", "a", "b"), Some(Action::Delay));
        assert_eq!(parse("a.b=error", "a", "b"), Some(Action::Error));
    }
}
