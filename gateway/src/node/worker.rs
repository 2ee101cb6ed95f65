//! The worker role: runs the binary's classes on the setup the supervisor
//! writes on its stdin.

use std::process::ExitCode;
use torpor_objects::{ControlIn, Registry, WorkerOptions};

/// `torpor worker --index I`.
pub(super) fn main(registry: Registry, index: u16) -> ExitCode {
    let who = format!("torpor worker {index}");
    let mut control = ControlIn::stdin();
    let mut options: WorkerOptions = match super::read_setup(&mut control) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{who}: {err}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    options.index = index;
    let run = torpor_objects::run(
        registry,
        options,
        control,
        crate::hold::trim::release_free_memory,
    )
    .map_err(Into::into);
    super::report(run, &who)
}
