//! A workflow's phases declared once: an enum whose variants carry their stored names, from which its apply and
//! undo (exhaustive matches) and its lists of phase names (API) are derived.

use tenantry_core::ErrorCode;
use tenantry_engine::PhaseError;

/// Declares a phase enum: each variant with its stored name (API: never rename one). It gets `name`, `parse`,
/// `ALL` (declaration order) and `names` (the names of a list of phases, in a `const`).
macro_rules! phases {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        // Not every workflow uses every helper (provision lists its phases by hand: its dry run differs).
        #[allow(dead_code)]
        impl $name {
            /// Every phase, in the order declared.
            $vis const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The phase's name as job records store it.
            $vis const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The phase a stored name means, if it is one of these.
            $vis fn parse(name: &str) -> Option<$name> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The names of `phases`, in order.
            $vis const fn names<const N: usize>(phases: [$name; N]) -> [&'static str; N] {
                let mut names = [""; N];
                let mut index = 0;
                while index < N {
                    names[index] = phases[index].name();
                    index += 1;
                }
                names
            }
        }
    };
}
pub(crate) use phases;

/// A phase name that none of a workflow's phases has: a job record this version cannot have written. Fatal at
/// apply and at undo, since guessing what such a phase did could leave its effects behind.
pub(crate) fn unknown_phase(workflow: &str, name: &str) -> PhaseError {
    PhaseError::fatal(
        ErrorCode::Internal,
        format!("unknown {workflow} phase {name:?}"),
    )
}

#[cfg(test)]
mod tests {
    phases! {
        enum ExamplePhase {
            First = "first_done",
            Second = "second_done",
        }
    }

    #[test]
    fn every_name_parses_back_to_its_phase_and_no_other_name_does() {
        for phase in ExamplePhase::ALL {
            assert_eq!(ExamplePhase::parse(phase.name()), Some(phase));
        }
        assert_eq!(ExamplePhase::parse("third_done"), None);
        assert_eq!(
            ExamplePhase::names(ExamplePhase::ALL),
            ["first_done", "second_done"]
        );
        assert_eq!(ExamplePhase::names([ExamplePhase::Second]), ["second_done"]);
    }
}
