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
    /// How files are imported, first match wins: the apps' own rules, then
    /// wrangler's defaults.
    pub(super) rules: Vec<ModuleRule>,
}

/// How files matching some globs are imported, as wrangler's `[[rules]]`
/// say it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModuleRule {
    /// What the files are.
    pub kind: ModuleKind,
    /// `**/*.html`, `*.txt`, `assets/**/*.bin`: `*` is any characters but
    /// `/`, `**/` any directories.
    pub globs: Vec<String>,
}

/// What an imported file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ModuleKind {
    /// JavaScript, an ES module.
    EsModule,
    /// Its default export is the file's text.
    Text,
    /// Its default export is the file's bytes, as an `ArrayBuffer`.
    Data,
}

/// Wrangler's rules when an app gives none for a file.
pub(super) fn default_rules() -> Vec<ModuleRule> {
    let rule = |kind, globs: &[&str]| ModuleRule {
        kind,
        globs: globs.iter().map(|g| (*g).to_owned()).collect(),
    };
    vec![
        rule(ModuleKind::EsModule, &["**/*.js", "**/*.mjs"]),
        rule(ModuleKind::Text, &["**/*.txt", "**/*.html"]),
        rule(ModuleKind::Data, &["**/*.bin"]),
    ]
}

impl AppLoader {
    fn kind_of(&self, path: &str) -> ModuleKind {
        self.rules
            .iter()
            .find(|rule| rule.globs.iter().any(|g| glob_matches_tail(g, path)))
            .map_or(ModuleKind::EsModule, |rule| rule.kind)
    }
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
        let path = Path::new(name);
        let source = match self.kind_of(name) {
            ModuleKind::EsModule => read_module(path),
            ModuleKind::Text => read_module(path).map(|text| text_module(&text)),
            ModuleKind::Data => read_bytes(path).map(|bytes| data_module(&bytes)),
        }
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
    String::from_utf8(read_bytes(path)?)
        .map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_MODULE_BYTES {
        return Err(format!(
            "{} is {} bytes, limit {MAX_MODULE_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A module whose default export is `text`. Its source, not the file, is
/// what is kept and pinned, as for JavaScript.
fn text_module(text: &str) -> String {
    let literal = serde_json::Value::String(text.to_owned()).to_string();
    format!("export default {literal};\n")
}

/// A module whose default export is an `ArrayBuffer` of `bytes`.
fn data_module(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(
        "const s = atob(\"{b64}\");\nconst b = new Uint8Array(s.length);\n\
         for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);\nexport default b.buffer;\n"
    )
}

/// Whether `glob` matches the end of `path` (`**/*.html` any HTML file,
/// `assets/*.txt` a text file in any `assets` directory).
pub(super) fn glob_matches_tail(glob: &str, path: &str) -> bool {
    let glob = glob.trim_start_matches("./");
    let parts: Vec<&str> = path.split('/').collect();
    (0..parts.len()).any(|start| glob_matches(glob, &parts[start..].join("/")))
}

fn glob_matches(glob: &str, path: &str) -> bool {
    if let Some(rest) = glob.strip_prefix("**/") {
        let mut tail = path;
        loop {
            if glob_matches(rest, tail) {
                return true;
            }
            match tail.split_once('/') {
                Some((_, next)) => tail = next,
                None => return false,
            }
        }
    }
    match glob.split_once('*') {
        None => glob == path,
        Some((before, after)) => {
            let Some(rest) = path.strip_prefix(before) else {
                return false;
            };
            // `*` takes characters up to the next `/` at most.
            let limit = rest.find('/').unwrap_or(rest.len());
            (0..=limit).any(|n| glob_matches(after, &rest[n..]))
        }
    }
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
    fn globs_match_as_wrangler_rules_write_them() {
        assert!(glob_matches_tail("**/*.html", "/app/src/chat.html"));
        assert!(glob_matches_tail("*.html", "/app/src/chat.html"));
        assert!(glob_matches_tail("src/*.txt", "/app/src/a.txt"));
        assert!(!glob_matches_tail("src/*.txt", "/app/src/sub/a.txt"));
        assert!(glob_matches_tail("src/**/*.txt", "/app/src/sub/a.txt"));
        assert!(!glob_matches_tail("**/*.html", "/app/src/chat.htm"));
    }

    #[test]
    fn relative_paths_are_normalized_lexically() {
        assert_eq!(
            normalize(Path::new("/a/b/./c/../d.js")),
            Path::new("/a/b/d.js")
        );
        assert_eq!(normalize(Path::new("/a/../../x.js")), Path::new("/x.js"));
    }
}
