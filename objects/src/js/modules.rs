//! How an app's `import`s are found: relative paths from the importing
//! file, and `cloudflare:workers` from Torpor itself. Bare package names are
//! refused with what to do instead (bundle the app first), since there is
//! no `node_modules` lookup.

use rquickjs::loader::{Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Error, Module};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// The built-in module apps import their base classes from.
pub(super) const WORKERS_MODULE: &str = "cloudflare:workers";

/// Largest module file read, so that a mistaken path (a log, a database)
/// cannot make the worker read gigabytes.
const MAX_MODULE_BYTES: u64 = 16 << 20;

/// `cloudflare:workers`, re-exporting what the prelude made.
const WORKERS_SOURCE: &str = "const w = globalThis.__torpor_workers;\n\
export const DurableObject = w.DurableObject;\n\
export const WorkerEntrypoint = w.WorkerEntrypoint;\n\
export const RpcTarget = w.RpcTarget;\n\
export const env = w.env;\n\
export default w;\n";

pub(super) struct AppResolver;

impl Resolver for AppResolver {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
    ) -> rquickjs::Result<String> {
        if name == WORKERS_MODULE {
            return Ok(name.to_owned());
        }
        if name.starts_with("./") || name.starts_with("../") || name.starts_with('/') {
            let dir = Path::new(base).parent().unwrap_or(Path::new("/"));
            return Ok(normalize(&dir.join(name)).to_string_lossy().into_owned());
        }
        Err(Error::new_resolving_message(
            base,
            name,
            "only relative imports and cloudflare:workers are supported by Torpor; \
             bundle packages into the app first (e.g. `wrangler deploy --dry-run --outdir dist`)",
        ))
    }
}

/// Module sources by absolute path: those a worker was handed (what the
/// supervisor loaded and checked), and those read from disk here.
#[derive(Default)]
pub(super) struct Sources {
    pub(super) pinned: BTreeMap<String, String>,
    pub(super) read: BTreeMap<String, String>,
}

/// Loads modules from the pinned sources first, so that a worker runs the
/// code the node checked, whatever has been written to the files since;
/// from disk otherwise, recording what it read.
pub(super) struct AppLoader {
    pub(super) sources: Rc<RefCell<Sources>>,
}

impl Loader for AppLoader {
    fn load<'js>(&mut self, ctx: &Ctx<'js>, name: &str) -> rquickjs::Result<Module<'js, Declared>> {
        if name == WORKERS_MODULE {
            return Module::declare(ctx.clone(), name, WORKERS_SOURCE);
        }
        let pinned = self.sources.borrow().pinned.get(name).cloned();
        if let Some(source) = pinned {
            return Module::declare(ctx.clone(), name, source);
        }
        if [".ts", ".tsx", ".mts", ".cts"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            return Err(Error::new_loading_message(
                name,
                "is TypeScript, and Torpor runs JavaScript: build the app first \
                 (`npx wrangler deploy --dry-run --outdir dist`) and point main at dist/index.js",
            ));
        }
        let source = read_module(Path::new(name))
            .map_err(|message| Error::new_loading_message(name, message))?;
        self.sources
            .borrow_mut()
            .read
            .insert(name.to_owned(), source.clone());
        Module::declare(ctx.clone(), name, source)
    }
}

/// A module file's text, bounded in size.
pub(super) fn read_module(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_MODULE_BYTES {
        return Err(format!(
            "{} is {} bytes, limit {MAX_MODULE_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// `a/./b/../c` as `a/c`, without touching the file system: module names
/// must be the same string however a file is reached, so that it is
/// evaluated once.
pub(super) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_normalized_lexically() {
        assert_eq!(
            normalize(Path::new("/a/b/./c/../d.js")),
            Path::new("/a/b/d.js")
        );
        assert_eq!(normalize(Path::new("/a/../../x.js")), Path::new("/x.js"));
    }
}
