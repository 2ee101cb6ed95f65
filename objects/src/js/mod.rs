//! Durable Objects apps written in JavaScript, run on QuickJS: one runtime
//! per worker process (bounded in memory, its handlers interrupted at
//! their timeout), one context per app, and each object a JS instance of
//! the app's exported class behind the same object-safe face a Rust class
//! has, so the worker's gates, transactions, hibernation and billing are
//! the same.
//!
//! Not here: what the Workers globals do (`prelude.js`, on the host
//! functions of `bridge.rs`), and how a config names an app (the gateway's
//! config hands the worker [`AppSpec`]s).

mod bridge;
mod modules;
mod object;

pub use modules::{ModuleKind, ModuleRule};

use crate::registry::Registry;
use bridge::{Current, Turn};
use rquickjs::{Context, Ctx, Function, Module, Object, Persistent, Runtime, Value};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

const PRELUDE: &str = include_str!("prelude.js");

/// Default heap of a worker's JavaScript runtime, all its apps together:
/// what a Durable Objects isolate may use.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 128 << 20;

/// Deepest native stack a script may use before a `RangeError`, well
/// inside the worker thread's own.
const MAX_STACK_BYTES: usize = 1 << 20;

/// One app a worker runs: where its code is and which of its exported
/// classes the node's namespaces use.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppSpec {
    /// The app's name in the config, for logs.
    pub name: String,
    /// The main ES module, an absolute path.
    pub main: PathBuf,
    /// The exported classes objects are made of.
    pub classes: Vec<String>,
    /// The class name whose objects run the default export's `fetch`, one
    /// request each, if routes lead to the app's front.
    #[serde(default)]
    pub front: Option<String>,
    /// The text of every module, by absolute path, as [`check`] read it:
    /// a worker runs these, not whatever the files hold when it starts
    /// (after a crash, an idle exit), so that only a reload changes the
    /// code, as only a reload changes the binary.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// How its files are imported, before wrangler's default rules (`.js`
    /// and `.mjs` are modules, `.txt` and `.html` text, `.bin` data).
    #[serde(default)]
    pub rules: Vec<ModuleRule>,
}

/// Most module text a worker's setup may carry, all apps together: it
/// travels in one control frame.
pub const MAX_SOURCES_BYTES: usize = 24 << 20;

/// Why an app cannot run.
#[derive(Debug, thiserror::Error)]
pub enum JsError {
    /// A module failed to load, parse or evaluate; the message carries the
    /// file and line when the engine knows them.
    #[error("app {app}: {message}")]
    Load {
        /// The app's name.
        app: String,
        /// What went wrong, with the JS stack.
        message: String,
    },
    /// A class a namespace names is not exported by the app's main module.
    #[error("app {app}: the main module {main} exports no class {class:?} (it exports {exports})")]
    MissingClass {
        /// The app's name.
        app: String,
        /// The main module.
        main: String,
        /// The class asked for.
        class: String,
        /// What it does export, for the message.
        exports: String,
    },
    /// Routes lead to the app, but its main module's default export has no
    /// `fetch`.
    #[error("app {app}: routes lead to it, but the main module {main} has no default export with a fetch method")]
    MissingFront {
        /// The app's name.
        app: String,
        /// The main module.
        main: String,
    },
    /// The engine could not be set up.
    #[error("javascript engine: {0}")]
    Engine(String),
}

/// A worker's JavaScript runtime.
pub(crate) struct Engine {
    runtime: Runtime,
    sources: Rc<RefCell<modules::Sources>>,
    /// When the script running now must stop; checked by the interrupt
    /// handler, so that a loop that never yields still ends at the
    /// handler's timeout.
    deadline: Rc<Cell<Option<Instant>>>,
}

impl Engine {
    /// A runtime whose modules come from `pinned` where it has them.
    pub(crate) fn new(
        max_memory_bytes: usize,
        pinned: BTreeMap<String, String>,
        rules: Vec<ModuleRule>,
    ) -> Result<Engine, JsError> {
        let runtime = Runtime::new().map_err(|e| JsError::Engine(e.to_string()))?;
        runtime.set_memory_limit(max_memory_bytes);
        runtime.set_max_stack_size(MAX_STACK_BYTES);
        let sources = Rc::new(RefCell::new(modules::Sources {
            pinned,
            read: BTreeMap::new(),
        }));
        let mut rules = rules;
        rules.extend(modules::default_rules());
        let loader = modules::AppLoader {
            sources: sources.clone(),
            rules,
        };
        runtime.set_loader(modules::AppResolver, loader);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let seen = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            seen.get().is_some_and(|d| Instant::now() >= d)
        })));
        Ok(Engine {
            runtime,
            sources,
            deadline,
        })
    }

    /// Loads `spec`'s modules in a context of their own.
    pub(crate) fn load(&self, spec: &AppSpec, bindings: &Bindings) -> Result<Rc<App>, JsError> {
        let fail = |message: String| JsError::Load {
            app: spec.name.clone(),
            message,
        };
        let context = Context::full(&self.runtime).map_err(|e| JsError::Engine(e.to_string()))?;
        let current: Current = Rc::new(RefCell::new(None));
        self.deadline
            .set(Some(Instant::now() + bindings.handler_timeout));
        let loaded = context.with(|ctx| -> Result<_, String> {
            let caught = |e: rquickjs::Error| describe_error(&ctx, e);
            let mut options = rquickjs::context::EvalOptions::default();
            options.global = true;
            options.strict = true;
            options.filename = Some("torpor:prelude".to_owned());
            let prelude: Function = ctx
                .eval_with_options(PRELUDE, options)
                .map_err(caught)?;
            let native = bridge::natives(&ctx, &current).map_err(caught)?;
            let api: Object = prelude.call((native,)).map_err(caught)?;
            let workers: Object = api.get("workers").map_err(caught)?;
            ctx.globals()
                .set("__torpor_workers", workers)
                .map_err(caught)?;
            let vars: Vec<Vec<String>> = bindings
                .vars
                .iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect();
            let make_env: Function = api.get("makeEnv").map_err(caught)?;
            let env: Object = make_env
                .call((vars, bindings.namespaces.clone()))
                .map_err(caught)?;
            let main = spec.main.to_string_lossy().into_owned();
            let promise = Module::import(&ctx, main).map_err(caught)?;
            while ctx.execute_pending_job() {}
            let exports: Object = match promise.result::<Object>() {
                Some(Ok(exports)) => exports,
                Some(Err(e)) => return Err(caught(e)),
                None => {
                    return Err(format!(
                        "{}: top-level await did not finish while loading (it may wait only for other modules)",
                        spec.main.display()
                    ))
                }
            };
            Ok((
                Persistent::save(&ctx, api),
                Persistent::save(&ctx, env),
                Persistent::save(&ctx, exports),
            ))
        });
        self.deadline.set(None);
        let (api, env, exports) = loaded.map_err(fail)?;
        let app = App {
            api,
            env,
            exports,
            name: spec.name.clone(),
            current,
            deadline: self.deadline.clone(),
            handler_timeout: bindings.handler_timeout,
            context,
            _runtime: self.runtime.clone(),
        };
        for class in &spec.classes {
            app.check_class(class, &spec.main)?;
        }
        if spec.front.is_some() {
            app.check_front(spec)?;
        }
        Ok(Rc::new(app))
    }
}

/// What every app of a worker sees in `env`, and how long its handlers may
/// run.
pub(crate) struct Bindings {
    pub vars: Vec<(String, String)>,
    pub namespaces: Vec<String>,
    pub handler_timeout: Duration,
}

/// A loaded app: its context and what its modules exported.
///
/// Fields drop in order: the values kept out of the engine first, then the
/// context, then the runtime, which must outlive everything allocated in
/// it (QuickJS aborts when a runtime is freed with values still alive).
pub(crate) struct App {
    /// What the prelude returned: the functions events are dispatched with.
    api: Persistent<Object<'static>>,
    /// The app's `env`.
    env: Persistent<Object<'static>>,
    /// The main module's exports.
    exports: Persistent<Object<'static>>,
    name: String,
    current: Current,
    deadline: Rc<Cell<Option<Instant>>>,
    handler_timeout: Duration,
    context: Context,
    /// Held, never read: what keeps the runtime alive until the above
    /// are gone.
    _runtime: Runtime,
}

impl App {
    fn check_class(&self, class: &str, main: &Path) -> Result<(), JsError> {
        let found = self
            .context
            .with(|ctx| -> rquickjs::Result<(bool, String)> {
                let exports = self.exports.clone().restore(&ctx)?;
                let value: Value = exports.get(class)?;
                let mut names = Vec::new();
                for key in exports.keys::<String>() {
                    names.push(key?);
                }
                Ok((value.is_constructor(), names.join(", ")))
            });
        match found {
            Ok((true, _)) => Ok(()),
            Ok((false, exports)) => Err(JsError::MissingClass {
                app: self.name.clone(),
                main: main.display().to_string(),
                class: class.to_owned(),
                exports: if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports
                },
            }),
            Err(e) => Err(JsError::Engine(e.to_string())),
        }
    }

    fn check_front(&self, spec: &AppSpec) -> Result<(), JsError> {
        let found = self.context.with(|ctx| -> rquickjs::Result<bool> {
            let exports = self.exports.clone().restore(&ctx)?;
            let default: Value = exports.get("default")?;
            let Some(default) = default.as_object() else {
                return Ok(false);
            };
            let fetch: Value = default.get("fetch")?;
            Ok(fetch.is_function())
        });
        match found {
            Ok(true) => Ok(()),
            Ok(false) => Err(JsError::MissingFront {
                app: self.name.clone(),
                main: spec.main.display().to_string(),
            }),
            Err(e) => Err(JsError::Engine(e.to_string())),
        }
    }

    /// Runs `f` in the app's context as the turn `turn`, with the
    /// promise jobs it queued, and hands the turn back.
    fn turn<R>(
        &self,
        deadline: Instant,
        turn: Turn,
        f: impl for<'js> FnOnce(&Ctx<'js>) -> R,
    ) -> (R, Turn) {
        *self.current.borrow_mut() = Some(turn);
        self.deadline.set(Some(deadline));
        let result = self.context.with(|ctx| {
            let result = f(&ctx);
            while ctx.execute_pending_job() {}
            result
        });
        self.deadline.set(None);
        let turn = self.current.borrow_mut().take();
        (
            result,
            turn.expect("a turn is only taken back by the code that set it"),
        )
    }
}

/// The worker's hold on its JavaScript runtime between events.
pub(crate) struct Collector(Runtime);

impl Collector {
    /// Frees what hibernated objects left in cycles, which reference
    /// counting alone does not, so that the allocator can hand it back.
    pub(crate) fn collect_garbage(&self) {
        self.0.run_gc();
    }
}

/// Adds each app's classes to `registry`, loading every app into one
/// runtime. A class of an app replaces a class of the binary of the same
/// name: the config gives each class name one meaning.
pub(crate) fn register(
    registry: &mut Registry,
    apps: &[AppSpec],
    bindings: &Bindings,
    max_memory_bytes: usize,
) -> Result<Option<Collector>, JsError> {
    if apps.is_empty() {
        return Ok(None);
    }
    let pinned = apps.iter().flat_map(|a| a.sources.clone()).collect();
    // One loader serves every app of the runtime: their rules, in order.
    let rules = apps.iter().flat_map(|a| a.rules.clone()).collect();
    let engine = Engine::new(max_memory_bytes, pinned, rules)?;
    for spec in apps {
        let app = engine.load(spec, bindings)?;
        for class in &spec.classes {
            let app = app.clone();
            let class_name = class.clone();
            registry.insert_factory(
                class,
                Rc::new(move |state, env| {
                    Box::new(object::JsObject::new(
                        app.clone(),
                        class_name.clone(),
                        state,
                        env,
                    ))
                }),
            );
        }
        if let Some(front) = &spec.front {
            let app = app.clone();
            registry.insert_factory(
                front,
                Rc::new(move |state, env| {
                    Box::new(object::JsObject::front(app.clone(), state, env))
                }),
            );
        }
    }
    Ok(Some(Collector(engine.runtime.clone())))
}

/// Loads `spec` in a runtime of its own and drops it: what the supervisor
/// runs before it starts (or reloads) workers, so that a syntax error or a
/// missing class refuses the config with the file and line.
/// Returns the modules' text it loaded, for [`AppSpec::sources`].
pub fn check(
    spec: &AppSpec,
    vars: &[(String, String)],
    namespaces: &[String],
) -> Result<BTreeMap<String, String>, JsError> {
    let engine = Engine::new(
        DEFAULT_MAX_MEMORY_BYTES,
        BTreeMap::new(),
        spec.rules.clone(),
    )?;
    let bindings = Bindings {
        vars: vars.to_vec(),
        namespaces: namespaces
            .iter()
            .filter(|n| !n.contains(':'))
            .cloned()
            .collect(),
        handler_timeout: Duration::from_secs(30),
    };
    drop(engine.load(spec, &bindings)?);
    let read = std::mem::take(&mut engine.sources.borrow_mut().read);
    let bytes: usize = read.values().map(String::len).sum();
    if bytes > MAX_SOURCES_BYTES {
        return Err(JsError::Load {
            app: spec.name.clone(),
            message: format!(
                "its modules are {bytes} bytes, limit {MAX_SOURCES_BYTES} (what a worker's setup carries)"
            ),
        });
    }
    Ok(read)
}

/// An exception as a JS author wants it in a log: name, message, and the
/// stack's file:line frames.
fn describe_error(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
    if !matches!(error, rquickjs::Error::Exception) {
        return error.to_string();
    }
    describe_value(ctx.catch())
}

fn describe_value(value: Value<'_>) -> String {
    let Some(object) = value.as_object() else {
        return match value.as_string() {
            Some(s) => format!("Uncaught {}", s.to_string().unwrap_or_default()),
            None => format!("Uncaught {}", value.type_name()),
        };
    };
    let name: String = object.get("name").unwrap_or_else(|_| "Error".to_owned());
    let message: String = object.get("message").unwrap_or_default();
    let stack: String = object.get("stack").unwrap_or_default();
    let mut out = format!("{name}: {message}");
    let stack = stack.trim_end();
    if !stack.is_empty() {
        out.push('\n');
        out.push_str(stack);
    }
    out
}

/// The env an app's objects and front see: the node's vars and secrets,
/// and a binding per namespace.
pub(crate) fn bindings_of(
    vars: &std::collections::BTreeMap<String, String>,
    secrets: &std::collections::BTreeMap<String, String>,
    namespaces: &[String],
    handler_timeout: Duration,
) -> Bindings {
    Bindings {
        vars: vars
            .iter()
            .chain(secrets.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        // An app's front is a namespace of the node too (`APP:fetch`, see
        // the gateway's config), but not a binding apps can call.
        namespaces: namespaces
            .iter()
            .filter(|n| !n.contains(':'))
            .cloned()
            .collect(),
        handler_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(main: PathBuf, classes: &[&str]) -> AppSpec {
        AppSpec {
            name: "t".to_owned(),
            main,
            classes: classes.iter().map(|c| (*c).to_owned()).collect(),
            front: Some("t:fetch".to_owned()),
            sources: BTreeMap::new(),
            rules: Vec::new(),
        }
    }

    fn test_app(app: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/apps")
            .join(app)
            .join("src/index.js")
    }

    // Loading and dropping an app exercises the drop order of values,
    // context and runtime: QuickJS aborts the process if it is wrong.
    #[test]
    fn the_test_apps_load_and_unload() {
        let namespaces = ["ROOMS".to_owned(), "LAB".to_owned()];
        check(&spec(test_app("chat"), &["ChatRoom"]), &[], &namespaces).unwrap();
        check(&spec(test_app("lab"), &["Lab"]), &[], &namespaces).unwrap();
    }

    #[test]
    fn a_missing_class_or_module_is_named() {
        let err = check(&spec(test_app("chat"), &["Nope"]), &[], &[]).unwrap_err();
        assert!(
            err.to_string().contains("exports no class \"Nope\""),
            "{err}"
        );
        let missing = test_app("chat").with_file_name("absent.js");
        let err = check(&spec(missing, &[]), &[], &[]).unwrap_err();
        assert!(err.to_string().contains("absent.js"), "{err}");
    }
}
