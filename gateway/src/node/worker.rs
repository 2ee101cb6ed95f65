//! The worker role: runs the binary's classes on the options the
//! supervisor passed.

use super::cli::WorkerArgs;
use super::BoxError;
use torpor_objects::{Registry, WorkerOptions};

pub(super) fn run(registry: Registry, args: WorkerArgs) -> Result<(), BoxError> {
    let options = WorkerOptions {
        run_dir: args.run_dir,
        edges: args.edges,
        index: args.index,
        hibernate_after: args.hibernate_after_ms,
        idle_exit: args.idle_exit_ms,
        handler_timeout: args.handler_timeout_ms,
        max_attachment_bytes: args.max_attachment_bytes,
        max_connections_per_object: args.max_connections_per_object,
        data_dir: args.data_dir,
        namespaces: args.namespaces,
    };
    torpor_objects::run(registry, options)?;
    Ok(())
}
