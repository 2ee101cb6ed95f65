//! The one `Config` tree: `config/torpor.toml` parses to `Config::default()`.
//! Loading goes file, then `TORPOR_*` variables, then flags, then
//! [`Config::validate`]. Only the binary reads files and the environment
//! (`validate`, which the binary calls at start, reads the variables that
//! routes name in `secret_env`, so that a missing secret is a config error).

use crate::frontdoor::auth::{AuthMode, Secret, MIN_SECRET_BYTES};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Environment variables that override the file, before flags do.
pub mod env {
    /// The config file (`--config`)
    pub const CONFIG: &str = "TORPOR_CONFIG";
    /// `listen.http`
    pub const HTTP: &str = "TORPOR_HTTP";
    /// `listen.admin`
    pub const ADMIN: &str = "TORPOR_ADMIN";
    /// `data_dir`
    pub const DATA_DIR: &str = "TORPOR_DATA_DIR";
    /// `workers`
    pub const WORKERS: &str = "TORPOR_WORKERS";
    /// `edges`
    pub const EDGES: &str = "TORPOR_EDGES";
    /// Log filter, e.g. `info` or `torpor=debug`.
    pub const LOG: &str = "TORPOR_LOG";
}

/// Everything a node is configured with.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where objects keep their data.
    pub data_dir: PathBuf,
    /// Number of edge processes sharing the listen port (SO_REUSEPORT), or
    /// `"auto"`: as many as `limits.max_connections` needs at the open
    /// files limit. Always a count after [`Config::validate`].
    #[serde(deserialize_with = "edges")]
    pub edges: Edges,
    /// Number of worker processes.
    pub workers: u16,
    /// Idle time after which an object is dropped from memory.
    #[serde(deserialize_with = "duration")]
    pub hibernate_after: Duration,
    /// Time without a live object after which a worker exits.
    #[serde(deserialize_with = "duration")]
    pub worker_idle_exit: Duration,
    /// Longest a handler may run.
    #[serde(deserialize_with = "duration")]
    pub handler_timeout: Duration,
    /// Listen addresses.
    pub listen: Listen,
    /// Limits.
    pub limits: Limits,
    /// Pings to quiet sockets, to find clients that vanished without a FIN.
    pub keepalive: Keepalive,
    /// Namespaces: a name, the class of its objects, and the key its ids
    /// are derived with (from the node secret).
    pub namespaces: Vec<Namespace>,
    /// Routes from paths to objects of a namespace.
    pub routes: Vec<Route>,
    /// JavaScript apps (Durable Objects apps written for Cloudflare) whose
    /// exported classes namespaces name with `app`.
    pub apps: Vec<App>,
    /// Also route `/bench/{name}` to the `Bench` class (namespace `BENCH`),
    /// for load tests and the test suite. Off by default: its commands let
    /// any client panic a handler, fill storage, or chain calls.
    pub bench_routes: bool,
    /// The price table `torpor bill` applies to the ledger.
    pub prices: crate::billing::Prices,
    /// Plain values every object reads with `Env::var`, as Durable
    /// Objects' `vars`.
    pub vars: BTreeMap<String, String>,
    /// Secrets every object reads with `Env::secret`: each name maps to the
    /// environment variable that holds its value, read at start so that
    /// the value never sits in a file.
    pub secrets: BTreeMap<String, String>,
    /// The secrets' values; set by [`Config::validate`], never read from
    /// the file.
    #[serde(skip)]
    pub secret_values: SecretValues,
}

/// The values of `[secrets]`, by name. Its `Debug` shows the names only,
/// so that printing a config never leaks them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValues(pub BTreeMap<String, String>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Listen addresses.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// WebSockets and HTTP to objects.
    pub http: SocketAddr,
    /// Admin API and `/metrics`.
    pub admin: SocketAddr,
}

/// Limits of DESIGN.md.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest message; 1009 beyond.
    pub max_message_bytes: usize,
    /// Largest serialized attachment.
    pub max_attachment_bytes: usize,
    /// WebSockets the whole node holds, spread evenly over its edges;
    /// upgrades past an edge's share get 503. 0 is no limit but the edges'
    /// open files limits. `edges = "auto"` sizes the node from it.
    pub max_connections: usize,
    /// Sockets per object; 503 beyond.
    pub max_connections_per_object: usize,
    /// Open WebSockets from one client IP address; 429 beyond. 0 is no
    /// limit.
    pub max_connections_per_address: usize,
    /// Bytes queued for a client that does not read; closed beyond.
    pub max_outbound_queue_bytes: usize,
    /// Protocol pings one socket may send in a second; past it the socket
    /// is closed (1008). 0 is no limit.
    pub max_pings_per_second: u16,
    /// Largest HTTP request head; 431 beyond.
    pub max_request_head_bytes: usize,
    /// Largest HTTP request body to an object; 413 beyond.
    pub max_request_bytes: usize,
    /// Time allowed for the HTTP request head.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// HTTP connections the front door serves at once, handshakes included;
    /// more wait in the kernel's accept backlog. Bounds the memory a
    /// connection storm leaves behind.
    pub max_frontdoor_connections: usize,
    /// Of those, how many one client address may hold; past it a new
    /// connection from that address is answered 429 at once. 0 is no
    /// limit. A slow or stalled client cannot take every slot.
    pub max_frontdoor_connections_per_address: usize,
    /// Events sent to one object and not yet handled before the edge stops
    /// reading its sockets.
    pub max_events_in_flight: u32,
    /// Bytes of client messages and requests an edge has sent to workers
    /// and not had answered, over all its objects; past it the edge stops
    /// reading the sockets that send more until half is answered. Bounds
    /// what slow workers make the edge's queues and their inboxes hold.
    pub max_bytes_in_flight: u64,
    /// Object databases one worker keeps open at once (two file
    /// descriptors each); past it the least recently used of objects
    /// between events are closed, and opened again on their next storage
    /// call. Bounds a worker's descriptors however many objects are live.
    pub max_open_databases_per_worker: usize,
    /// Live objects one worker holds before it hibernates idle ones early:
    /// past it, an object with no event for a second hibernates instead of
    /// waiting `hibernate_after`. Bounds a worker's memory when clients
    /// wake objects faster than they go back to sleep. 0 is no limit.
    pub max_live_objects_per_worker: usize,
    /// Heap of a worker's JavaScript runtime, shared by every app and
    /// object it runs; past it an allocation throws (the handler fails).
    pub max_js_memory_bytes: usize,
}

/// A JavaScript app: its main ES module, whose exported classes are the
/// classes of the namespaces that name the app.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// How namespaces refer to it, e.g. `chat`.
    pub name: String,
    /// The main module; relative to the config file's directory.
    pub main: PathBuf,
    /// How files it imports are read, as wrangler's `[[rules]]`:
    /// `{ type = "Text", globs = ["**/*.md"] }` (`ESModule`, `Text` or
    /// `Data`), before the defaults (`.js`/`.mjs` modules, `.txt`/`.html`
    /// text, `.bin` data).
    #[serde(default)]
    pub rules: Vec<ModuleRule>,
}

/// One of an app's `rules`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleRule {
    /// `ESModule`, `Text` or `Data`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `**/*.html`, `*.txt`, `assets/**/*.bin`.
    pub globs: Vec<String>,
    /// Wrangler's flag; rules are tried in order, the app's before the
    /// defaults, whatever it says.
    #[serde(default)]
    pub fallthrough: bool,
}

impl ModuleRule {
    /// The kind the worker understands, if it is one.
    pub fn kind(&self) -> Option<torpor_objects::js::ModuleKind> {
        use torpor_objects::js::ModuleKind;
        match self.kind.as_str() {
            "ESModule" => Some(ModuleKind::EsModule),
            "Text" => Some(ModuleKind::Text),
            "Data" => Some(ModuleKind::Data),
            _ => None,
        }
    }
}

/// A namespace of objects of one class, e.g. `ROOMS` of `ChatRoom`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// The binding name objects use in `Env`, e.g. `ROOMS`.
    pub name: String,
    /// Class name registered in the worker: a class of the binary, or with
    /// `app`, a class the app's main module exports.
    pub class: String,
    /// The JavaScript app whose exported `class` this is.
    #[serde(default)]
    pub app: Option<String>,
}

/// A route: a path, the namespace of its objects, and where the object's id
/// comes from.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// e.g. `/rooms/{name}`; `{name}` is one whole path segment, present
    /// exactly when `id` is `name` or `hex`.
    pub path: String,
    /// The namespace's `name`; set by [`Config::validate`] for a route to
    /// an app.
    #[serde(default)]
    pub namespace: String,
    /// Instead of `namespace`: the JavaScript app whose default export's
    /// `fetch` gets the route's requests (its stateless front), each in an
    /// object of its own.
    #[serde(default)]
    pub app: Option<String>,
    /// Where the object id comes from; `name` by default.
    #[serde(default)]
    pub id: IdSource,
    /// Who may reach the route's objects: `none` (default) or `hmac`, a
    /// token per object (see [`crate::frontdoor::auth`]).
    #[serde(default)]
    pub auth: AuthMode,
    /// With `hmac`: the environment variable that holds the secret, read
    /// at start by [`Config::validate`].
    #[serde(default)]
    pub secret_env: Option<String>,
    /// With `hmac`: the secret itself, for development; not with `secret_env`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Allowed `Origin` values (`https://a.example`); absent allows any,
    /// present refuses a request without a listed Origin with 403.
    #[serde(default)]
    pub origins: Option<Vec<String>>,
    /// The HMAC key in use, from `secret` or `secret_env`; set by
    /// [`Config::validate`], never read from the file.
    #[serde(skip)]
    pub key: Option<Secret>,
}

impl Route {
    /// A route anyone may take, with no Origin check.
    fn open(path: &str, namespace: &str, id: IdSource) -> Route {
        Route {
            path: path.into(),
            namespace: namespace.into(),
            app: None,
            id,
            auth: AuthMode::None,
            secret_env: None,
            secret: None,
            origins: None,
            key: None,
        }
    }
}

/// The namespace (and class) of an app's front: objects of it run the
/// app's default `fetch`, one request each. The `:` keeps it apart from any
/// binding name an app could give a namespace of its own.
pub fn front_namespace(app: &str) -> String {
    format!("{app}:fetch")
}

/// The namespace `bench_routes` adds, unless the config declares it.
pub const BENCH_NAMESPACE: &str = "BENCH";

/// Where a route takes its object's id from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IdSource {
    /// `id_from_name` of the `{name}` path segment.
    #[default]
    Name,
    /// `id_from_name` of a query parameter (`query:room`).
    Query(String),
    /// `id_from_name` of a request header (`header:x-room`).
    Header(String),
    /// A new unique id for every request, returned in `x-torpor-object-id`.
    Unique,
    /// The `{name}` segment is a 64-hex id of the namespace, verified.
    Hex,
}

impl IdSource {
    /// Whether the path must carry a `{name}` segment.
    pub fn needs_path_segment(&self) -> bool {
        matches!(self, IdSource::Name | IdSource::Hex)
    }
}

impl<'de> Deserialize<'de> for IdSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IdSource, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "name" => Ok(IdSource::Name),
            "unique" => Ok(IdSource::Unique),
            "hex" => Ok(IdSource::Hex),
            _ => match text.split_once(':') {
                Some(("query", param)) if !param.is_empty() => {
                    Ok(IdSource::Query(param.to_owned()))
                }
                Some(("header", header)) if !header.is_empty() => {
                    Ok(IdSource::Header(header.to_ascii_lowercase()))
                }
                _ => Err(serde::de::Error::custom(format!(
                    "{text:?}: id must be name, unique, hex, query:PARAM or header:NAME"
                ))),
            },
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./data"),
            edges: Edges::Count(1),
            workers: 2,
            hibernate_after: Duration::from_secs(10),
            worker_idle_exit: Duration::from_secs(60),
            handler_timeout: Duration::from_secs(30),
            listen: Listen::default(),
            limits: Limits::default(),
            keepalive: Keepalive::default(),
            namespaces: [
                ("ROOMS", "ChatRoom"),
                ("ECHO", "Echo"),
                ("COUNTERS", "Counter"),
                ("PRESENCE", "Presence"),
                ("GAMES", "GameRelay"),
            ]
            .into_iter()
            .map(|(name, class)| Namespace {
                name: name.into(),
                class: class.into(),
                app: None,
            })
            .collect(),
            apps: Vec::new(),
            routes: [
                ("/rooms/{name}", "ROOMS", IdSource::Name),
                ("/chat", "ROOMS", IdSource::Query("room".into())),
                ("/echo/{name}", "ECHO", IdSource::Name),
                ("/counter/{name}", "COUNTERS", IdSource::Name),
                ("/counters/{name}", "COUNTERS", IdSource::Hex),
                ("/counters", "COUNTERS", IdSource::Unique),
                ("/presence/{name}", "PRESENCE", IdSource::Name),
                ("/games/{name}", "GAMES", IdSource::Name),
            ]
            .into_iter()
            .map(|(path, namespace, id)| Route::open(path, namespace, id))
            .collect(),
            bench_routes: false,
            prices: crate::billing::Prices::default(),
            vars: BTreeMap::new(),
            secrets: BTreeMap::new(),
            secret_values: SecretValues::default(),
        }
    }
}

impl Default for Listen {
    fn default() -> Listen {
        Listen {
            http: SocketAddr::from(([127, 0, 0, 1], 8787)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// The edge's keepalive: every `interval`, a socket that sent nothing since
/// the last time gets a protocol ping; one that leaves `max_missed` pings in
/// a row unanswered is closed, 1006 to its object.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Keepalive {
    /// Zero: no pings (the default).
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// Unanswered pings before a socket is closed.
    pub max_missed: u8,
}

impl Default for Keepalive {
    fn default() -> Keepalive {
        Keepalive {
            interval: Duration::ZERO,
            max_missed: 2,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 1 << 20,
            max_attachment_bytes: 2048,
            max_connections: 0,
            max_connections_per_object: 32_768,
            max_connections_per_address: 0,
            max_outbound_queue_bytes: 4 << 20,
            max_pings_per_second: 100,
            max_request_head_bytes: 16 << 10,
            max_request_bytes: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            max_frontdoor_connections: 4096,
            max_frontdoor_connections_per_address: 256,
            max_events_in_flight: 1024,
            max_bytes_in_flight: 64 << 20,
            max_open_databases_per_worker: 1024,
            max_live_objects_per_worker: 10_000,
            max_js_memory_bytes: torpor_objects::js::DEFAULT_MAX_MEMORY_BYTES,
        }
    }
}

/// A config that cannot be used; names the key (and the file when known).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this tree.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why, with the key.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, dotted.
        key: String,
        /// What is wrong, with the numbers.
        message: String,
    },
}

/// A config as the supervisor read it: the file's text and the overrides
/// from flags and `TORPOR_*` variables. Children get this, not a path, so
/// that a restarted edge runs on what its siblings run on even if the file
/// changed since.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ConfigSource {
    /// The file, as named on the command line (errors name it).
    pub path: PathBuf,
    /// Its text when it was read.
    pub text: String,
    /// `(key, flag, value)` in the order they apply, as [`Config::set`]
    /// takes them; `flag` names the override in errors.
    pub overrides: Vec<(String, String, String)>,
}

impl ConfigSource {
    /// Reads the file.
    pub fn read(path: PathBuf) -> Result<ConfigSource, ConfigError> {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        // A wrangler config is read as the Torpor config it stands for,
        // here, so that a reload reads the app's config anew too.
        let text = if crate::wrangler::is_wrangler_config(&path) {
            let (text, warnings) = crate::wrangler::translate(&path, &text)?;
            for warning in warnings {
                tracing::warn!(file = %path.display(), "{warning}");
            }
            text
        } else {
            text
        };
        Ok(ConfigSource {
            path,
            text,
            overrides: Vec::new(),
        })
    }

    /// Adds an override, applied after those before it.
    pub fn with_override(mut self, key: &str, flag: &str, value: &str) -> ConfigSource {
        self.overrides
            .push((key.to_owned(), flag.to_owned(), value.to_owned()));
        self
    }

    /// Parses the text, applies the overrides, and validates the result.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut config = Config::from_toml(&self.text, self.path.clone())?;
        for (key, flag, value) in &self.overrides {
            config.set(key, value).map_err(|err| match err {
                ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                    key: format!("{flag} (or its environment variable)"),
                    message,
                },
                other => other,
            })?;
        }
        config.validate()
    }
}

impl Config {
    /// Parses TOML text; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: PathBuf) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source: Box::new(source),
        })?;
        config.anchor_apps(&path);
        Ok(config)
    }

    /// Each app's `main` as an absolute path: relative to the directory of
    /// the config file `path`, so that a config means the same files
    /// whatever directory the node starts in.
    fn anchor_apps(&mut self, path: &std::path::Path) {
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        for app in &mut self.apps {
            let joined = dir.join(&app.main);
            app.main = std::path::absolute(&joined).unwrap_or(joined);
        }
    }

    /// Points each route to an app at the app's front namespace (made
    /// here), with a new object per request: the front keeps no state, and
    /// its requests must not wait behind one another while they call
    /// objects.
    fn route_fronts(&mut self) -> Result<(), ConfigError> {
        for i in 0..self.routes.len() {
            let Some(app) = self.routes[i].app.clone() else {
                if self.routes[i].namespace.is_empty() {
                    return Err(ConfigError::Invalid {
                        key: format!("routes[{i}]"),
                        message: "needs a namespace (or an app)".to_owned(),
                    });
                }
                continue;
            };
            let route = &mut self.routes[i];
            if !route.namespace.is_empty() || route.id != IdSource::Name {
                return Err(ConfigError::Invalid {
                    key: format!("routes[{i}].app"),
                    message: "a route to an app's front takes no namespace or id: \
                              the app's fetch picks the object"
                        .to_owned(),
                });
            }
            let namespace = front_namespace(&app);
            route.namespace = namespace.clone();
            route.id = IdSource::Unique;
            if !self.namespaces.iter().any(|n| n.name == namespace) {
                self.namespaces.push(Namespace {
                    name: namespace.clone(),
                    class: namespace,
                    app: Some(app),
                });
            }
        }
        Ok(())
    }

    /// Apps have distinct names and a main module that exists; a
    /// namespace's `app` names one; a class name means one thing (one
    /// app's class, or the binary's).
    fn check_apps(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        for (i, app) in self.apps.iter().enumerate() {
            if app.name.is_empty() || self.apps[..i].iter().any(|a| a.name == app.name) {
                return Err(invalid(
                    &format!("apps[{i}].name"),
                    format!("{:?} is empty or declared twice", app.name),
                ));
            }
            for (j, rule) in app.rules.iter().enumerate() {
                if rule.kind().is_none() {
                    return Err(invalid(
                        &format!("apps[{i}].rules[{j}].type"),
                        format!(
                            "{:?}: Torpor reads ESModule, Text and Data modules",
                            rule.kind
                        ),
                    ));
                }
            }
            if !app.main.is_file() {
                return Err(invalid(
                    &format!("apps[{i}].main"),
                    format!("{} is not a file", app.main.display()),
                ));
            }
        }
        for (i, namespace) in self.namespaces.iter().enumerate() {
            if let Some(app) = &namespace.app {
                if !self.apps.iter().any(|a| &a.name == app) {
                    return Err(invalid(
                        &format!("namespaces[{i}].app"),
                        format!("no app named {app:?} in [[apps]]"),
                    ));
                }
            }
            if let Some(other) = self.namespaces[..i]
                .iter()
                .find(|n| n.class == namespace.class && n.app != namespace.app)
            {
                return Err(invalid(
                    &format!("namespaces[{i}].class"),
                    format!(
                        "class {:?} is also namespace {}'s, of {}: one class name, one class",
                        namespace.class,
                        other.name,
                        other
                            .app
                            .as_deref()
                            .map_or("the binary".to_owned(), |a| format!("app {a}"))
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Reads and parses a file.
    pub fn load(path: PathBuf) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Sets one value by its override name (`http`, `admin`, `data_dir`,
    /// `edges`, `workers`), as flags and environment variables do.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        match key {
            "http" => {
                self.listen.http = value
                    .parse()
                    .map_err(|e| invalid(format!("{value:?}: {e}")))?
            }
            "admin" => {
                self.listen.admin = value
                    .parse()
                    .map_err(|e| invalid(format!("{value:?}: {e}")))?
            }
            "data_dir" => self.data_dir = PathBuf::from(value),
            "workers" => {
                self.workers = value
                    .parse()
                    .map_err(|e| invalid(format!("{value:?}: {e}")))?
            }
            "edges" => self.edges = Edges::parse(value).map_err(invalid)?,
            _ => return Err(invalid("no such override".to_owned())),
        }
        Ok(())
    }

    /// Checks ranges and routes.
    pub fn validate(mut self) -> Result<Config, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        if self.workers == 0 || self.workers > 256 {
            return Err(invalid(
                "workers",
                format!("{} is not within 1..=256", self.workers),
            ));
        }
        self.edges = Edges::Count(self.edges_for(open_files_limit())?);
        let limits = &self.limits;
        if !(125..=32 << 20).contains(&limits.max_message_bytes) {
            return Err(invalid(
                "limits.max_message_bytes",
                format!("{} is not within 125..=33554432", limits.max_message_bytes),
            ));
        }
        if limits.max_attachment_bytes > 16_384 {
            return Err(invalid(
                "limits.max_attachment_bytes",
                format!("{} is over 16384", limits.max_attachment_bytes),
            ));
        }
        if limits.max_request_head_bytes < 8192 {
            return Err(invalid(
                "limits.max_request_head_bytes",
                format!("{} is under 8192", limits.max_request_head_bytes),
            ));
        }
        if limits.max_frontdoor_connections == 0 {
            return Err(invalid(
                "limits.max_frontdoor_connections",
                "must be at least 1".to_owned(),
            ));
        }
        if limits.max_bytes_in_flight < 1 << 20 {
            return Err(invalid(
                "limits.max_bytes_in_flight",
                format!("{} is under 1048576", limits.max_bytes_in_flight),
            ));
        }
        if limits.max_open_databases_per_worker == 0 {
            return Err(invalid(
                "limits.max_open_databases_per_worker",
                "must be at least 1".to_owned(),
            ));
        }
        if limits.max_events_in_flight == 0 {
            return Err(invalid(
                "limits.max_events_in_flight",
                "must be at least 1".to_owned(),
            ));
        }
        if !self.listen.admin.ip().is_loopback() {
            return Err(invalid(
                "listen.admin",
                format!(
                    "{} is not a loopback address: the admin API (/admin, /metrics, reload) \
                     has no authentication; keep it on loopback, behind a proxy that has",
                    self.listen.admin
                ),
            ));
        }
        let keepalive = &self.keepalive;
        if !keepalive.interval.is_zero() && keepalive.interval < Duration::from_millis(100) {
            return Err(invalid(
                "keepalive.interval",
                format!(
                    "{:?} is under 100ms (0s turns pings off)",
                    keepalive.interval
                ),
            ));
        }
        if keepalive.max_missed == 0 {
            return Err(invalid(
                "keepalive.max_missed",
                "must be at least 1: a quiet socket is pinged before it is closed".to_owned(),
            ));
        }
        if let Err((key, message)) = self.prices.check() {
            return Err(invalid(&format!("prices.{key}"), message));
        }
        self.secret_values = self.read_secrets()?;
        if self.bench_routes && !self.namespaces.iter().any(|n| n.name == BENCH_NAMESPACE) {
            self.namespaces.push(Namespace {
                name: BENCH_NAMESPACE.into(),
                class: "Bench".into(),
                app: None,
            });
            self.routes.push(Route::open(
                "/bench/{name}",
                BENCH_NAMESPACE,
                IdSource::Name,
            ));
        }
        for (i, namespace) in self.namespaces.iter().enumerate() {
            if namespace.name.is_empty() || namespace.class.is_empty() {
                return Err(invalid(
                    &format!("namespaces[{i}]"),
                    "name and class must not be empty".to_owned(),
                ));
            }
            if self.namespaces[..i]
                .iter()
                .any(|n| n.name == namespace.name)
            {
                return Err(invalid(
                    &format!("namespaces[{i}].name"),
                    format!("{:?} is declared twice", namespace.name),
                ));
            }
        }
        self.route_fronts()?;
        self.check_apps()?;
        for (i, route) in self.routes.iter().enumerate() {
            if !self.namespaces.iter().any(|n| n.name == route.namespace) {
                return Err(invalid(
                    &format!("routes[{i}].namespace"),
                    format!("no namespace named {:?}", route.namespace),
                ));
            }
            let pattern = crate::frontdoor::RoutePattern::parse(&route.path);
            let segment = route.id.needs_path_segment();
            if pattern.as_ref().is_none_or(|p| p.has_name() != segment) {
                let shape = if segment {
                    "hold exactly one {name} segment"
                } else {
                    "hold no {name} segment (the id comes from elsewhere)"
                };
                return Err(invalid(
                    &format!("routes[{i}].path"),
                    format!("{:?} must start with / and {shape}", route.path),
                ));
            }
        }
        for (i, route) in self.routes.iter_mut().enumerate() {
            route.key = route_key(i, route)?;
            check_origins(i, route)?;
        }
        // Auth guards objects, not paths: a second route to a namespace
        // without the first one's token check would be a way around it.
        for (i, route) in self.routes.iter().enumerate() {
            let earlier = self.routes[..i]
                .iter()
                .find(|r| r.namespace == route.namespace && r.auth != route.auth);
            if let Some(earlier) = earlier {
                return Err(invalid(
                    &format!("routes[{i}].auth"),
                    format!(
                        "route {} reaches namespace {} with auth {}, route {} with auth {}: \
                         every route to a namespace must guard it alike",
                        route.path, route.namespace, route.auth, earlier.path, earlier.auth
                    ),
                ));
            }
        }
        Ok(self)
    }
}

impl Config {
    /// Checks the names of `vars` and `secrets` and reads each secret from
    /// its environment variable.
    fn read_secrets(&self) -> Result<SecretValues, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid { key, message };
        for name in self.vars.keys().chain(self.secrets.keys()) {
            if name.is_empty() {
                return Err(invalid("vars".to_owned(), "a name is empty".to_owned()));
            }
        }
        let mut values = BTreeMap::new();
        for (name, variable) in &self.secrets {
            let key = format!("secrets.{name}");
            if self.vars.contains_key(name) {
                return Err(invalid(
                    key,
                    "is also a var; give each its own name".to_owned(),
                ));
            }
            match std::env::var(variable) {
                Ok(value) => values.insert(name.clone(), value),
                Err(_) => {
                    return Err(invalid(
                        key,
                        format!("the environment variable {variable} is not set (or not UTF-8)"),
                    ))
                }
            };
        }
        Ok(SecretValues(values))
    }
}

/// The HMAC key of route `i`: checks `auth`, `secret` and `secret_env`
/// together and reads the environment variable (this is "at start").
fn route_key(i: usize, route: &Route) -> Result<Option<Secret>, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: format!("routes[{i}].{key}"),
        message,
    };
    let path = &route.path;
    match (route.auth, &route.secret, &route.secret_env) {
        (AuthMode::None, None, None) => Ok(None),
        (AuthMode::None, Some(_), _) | (AuthMode::None, _, Some(_)) => Err(invalid(
            "auth",
            format!("route {path} has a secret but auth is none; set auth = \"hmac\" or drop the secret"),
        )),
        (AuthMode::Hmac, _, _) if route.id == IdSource::Unique => Err(invalid(
            "auth",
            format!("route {path} makes a new object per request, so no token can name its object"),
        )),
        (AuthMode::Hmac, _, _) if route.id == IdSource::Query(QUERY_TOKEN.to_owned()) => {
            Err(invalid(
                "id",
                format!("route {path}: query parameter {QUERY_TOKEN} carries the auth token"),
            ))
        }
        (AuthMode::Hmac, None, None) => Err(invalid(
            "auth",
            format!("route {path} has auth hmac but neither secret_env nor secret"),
        )),
        (AuthMode::Hmac, Some(_), Some(_)) => Err(invalid(
            "secret",
            format!("route {path} has both secret and secret_env; keep one"),
        )),
        (AuthMode::Hmac, Some(secret), None) => {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(invalid(
                    "secret",
                    format!(
                        "route {path}: secret is {} bytes, at least {MIN_SECRET_BYTES}",
                        secret.len()
                    ),
                ));
            }
            Ok(Some(secret.clone()))
        }
        (AuthMode::Hmac, None, Some(var)) => {
            use std::os::unix::ffi::OsStringExt;
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err(invalid(
                    "secret_env",
                    format!("route {path}: {var:?} is not an environment variable name"),
                ));
            }
            let Some(value) = std::env::var_os(var) else {
                return Err(invalid(
                    "secret_env",
                    format!("route {path}: environment variable {var} is not set"),
                ));
            };
            let value = value.into_vec();
            if value.len() < MIN_SECRET_BYTES {
                let what = if value.is_empty() {
                    "is empty".to_owned()
                } else {
                    format!("holds {} bytes, at least {MIN_SECRET_BYTES}", value.len())
                };
                return Err(invalid(
                    "secret_env",
                    format!("route {path}: environment variable {var} {what}"),
                ));
            }
            Ok(Some(Secret::new(value)))
        }
    }
}

/// The query parameter a token may come in; no route may take its id from it.
const QUERY_TOKEN: &str = crate::frontdoor::auth::QUERY_PARAM;

/// Origins are what browsers send: `scheme://host[:port]`, no path.
fn check_origins(i: usize, route: &Route) -> Result<(), ConfigError> {
    let Some(origins) = &route.origins else {
        return Ok(());
    };
    if origins.is_empty() {
        return Err(ConfigError::Invalid {
            key: format!("routes[{i}].origins"),
            message: format!(
                "route {}: an empty list refuses every request; drop the key to allow any origin",
                route.path
            ),
        });
    }
    for (j, origin) in origins.iter().enumerate() {
        let well_formed = origin.split_once("://").is_some_and(|(scheme, host)| {
            !scheme.is_empty() && !host.is_empty() && !host.contains(['/', '?', '#', ' '])
        });
        if !well_formed {
            return Err(ConfigError::Invalid {
                key: format!("routes[{i}].origins[{j}]"),
                message: format!("{origin:?} is not scheme://host[:port] (no path, no trailing /)"),
            });
        }
    }
    Ok(())
}

/// How many edge processes a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edges {
    Count(u16),
    /// As many as `limits.max_connections` needs (resolved by `validate`).
    Auto,
}

impl Edges {
    /// Most edges a node runs.
    pub const MAX: u16 = 64;

    fn parse(text: &str) -> Result<Edges, String> {
        match text {
            "auto" => Ok(Edges::Auto),
            _ => text
                .parse()
                .map(Edges::Count)
                .map_err(|_| format!("{text:?} is neither a number of edges nor \"auto\"")),
        }
    }
}

/// Files an edge keeps open besides its clients' sockets: listeners, the
/// links to workers, the ledger, the alarm schedule, logs and the poller.
const EDGE_OWN_FILES: u64 = 256;

/// The open files limit every process of the node gets (each raises its
/// soft limit to this hard one at start); `u64::MAX` if unlimited.
pub fn open_files_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX)
}

impl Config {
    /// The WebSockets one edge can hold under an open files limit of
    /// `fd_limit`: what is left once its front door's connections and its
    /// own files are counted.
    pub fn sockets_per_edge(&self, fd_limit: u64) -> u64 {
        let frontdoor = u64::try_from(self.limits.max_frontdoor_connections).unwrap_or(u64::MAX);
        fd_limit
            .saturating_sub(frontdoor)
            .saturating_sub(EDGE_OWN_FILES + u64::from(self.workers))
    }

    /// The number of edges, checked against `limits.max_connections` at an
    /// open files limit of `fd_limit`, or worked out from it for `"auto"`.
    pub fn edges_for(&self, fd_limit: u64) -> Result<u16, ConfigError> {
        let wanted = u64::try_from(self.limits.max_connections).unwrap_or(u64::MAX);
        let per_edge = self.sockets_per_edge(fd_limit);
        let invalid = |message: String| ConfigError::Invalid {
            key: "edges".to_owned(),
            message,
        };
        let room = format!(
            "at an open files limit of {fd_limit}, an edge holds {per_edge} sockets \
             (the limit less limits.max_frontdoor_connections and {} files of its own)",
            EDGE_OWN_FILES + u64::from(self.workers)
        );
        let needed = match per_edge {
            0 => u64::MAX,
            _ => wanted.div_ceil(per_edge).max(1),
        };
        match self.edges {
            Edges::Auto if wanted == 0 => Err(invalid(
                "\"auto\" sizes the node from limits.max_connections, which is 0 (no limit): \
                 set it, or give a number of edges"
                    .to_owned(),
            )),
            Edges::Auto => u16::try_from(needed)
                .ok()
                .filter(|&n| n <= Edges::MAX)
                .ok_or_else(|| {
                    invalid(format!(
                        "limits.max_connections = {wanted} needs more than {} edges: {room}",
                        Edges::MAX
                    ))
                }),
            Edges::Count(n) if n == 0 || n > Edges::MAX => {
                Err(invalid(format!("{n} is not within 1..={}", Edges::MAX)))
            }
            Edges::Count(n) if u64::from(n) < needed => Err(invalid(format!(
                "limits.max_connections = {wanted} over {n} edges is more than they hold: \
                 {room}; set edges = {needed} or \"auto\""
            ))),
            Edges::Count(n) => Ok(n),
        }
    }

    /// The resolved number of edges (1 before [`Config::validate`] resolves
    /// `"auto"`).
    pub fn edge_count(&self) -> u16 {
        match self.edges {
            Edges::Count(n) => n,
            Edges::Auto => 1,
        }
    }

    /// The WebSockets each edge may hold of `limits.max_connections`
    /// (0: no limit).
    pub fn max_sockets_per_edge(&self) -> usize {
        let edges = usize::from(self.edge_count().max(1));
        self.limits.max_connections.div_ceil(edges)
    }
}

fn edges<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Edges, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Count(u16),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Count(n) => Ok(Edges::Count(n)),
        Raw::Text(text) => Edges::parse(&text).map_err(serde::de::Error::custom),
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Parses `250ms`, `10s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (ms, s, m, h)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => return Err(format!("{text:?}: unit must be ms, s, m or h")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_to_the_defaults() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/torpor.toml"
        ));
        let config = Config::load(path).unwrap().validate().unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn secrets_are_read_from_the_environment_and_never_printed() {
        let variable = "TORPOR_CONFIG_TEST_SECRET";
        std::env::set_var(variable, "hunter2-hunter2");
        let text = format!("[vars]\nMODE = \"test\"\n[secrets]\nKEY = \"{variable}\"\n");
        let config = Config::from_toml(&text, "t.toml".into())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(config.secret_values.0["KEY"], "hunter2-hunter2");
        assert_eq!(config.vars["MODE"], "test");
        let printed = format!("{config:?}");
        assert!(
            printed.contains("KEY") && !printed.contains("hunter2"),
            "{printed}"
        );

        let clash = format!("[vars]\nKEY = \"x\"\n[secrets]\nKEY = \"{variable}\"\n");
        let err = Config::from_toml(&clash, "t.toml".into())
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("secrets.KEY"), "{err}");
    }

    #[test]
    fn a_second_route_cannot_reach_a_namespace_without_its_auth() {
        let text = r#"
            [[namespaces]]
            name = "SECURE"
            class = "Echo"
            [[routes]]
            path = "/secure/{name}"
            namespace = "SECURE"
            auth = "hmac"
            secret = "a-development-secret-of-enough-bytes"
            [[routes]]
            path = "/open/{name}"
            namespace = "SECURE"
        "#;
        let err = Config::from_toml(text, "t.toml".into())
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[1].auth"), "{err}");
        assert!(
            err.contains("/open/{name}") && err.contains("hmac"),
            "{err}"
        );
    }

    #[test]
    fn a_cap_of_no_open_databases_is_refused_with_its_name() {
        let text = "[limits]\nmax_open_databases_per_worker = 0\n";
        let err = Config::from_toml(text, "t.toml".into())
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("limits.max_open_databases_per_worker"),
            "{err}"
        );
        let text = "[limits]\nmax_open_databases_per_worker = 8\n";
        let config = Config::from_toml(text, "t.toml".into())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(config.limits.max_open_databases_per_worker, 8);
    }

    #[test]
    fn a_route_to_an_app_gets_a_front_namespace_and_app_mistakes_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.js"), "export class Room {}\n").unwrap();
        let config_path = dir.path().join("torpor.toml");
        let app = "[[apps]]\nname = \"chat\"\nmain = \"index.js\"\n";
        let rooms = "[[namespaces]]\nname = \"ROOMS\"\nclass = \"Room\"\napp = \"chat\"\n";
        let front = "[[routes]]\npath = \"/*\"\napp = \"chat\"\n";
        let load = |text: String| Config::from_toml(&text, config_path.clone())?.validate();

        let config = load(format!("{app}{rooms}{front}")).unwrap();
        assert_eq!(config.apps[0].main, dir.path().join("index.js"));
        assert_eq!(config.routes[0].namespace, "chat:fetch");
        assert_eq!(config.routes[0].id, IdSource::Unique);
        let namespace = config.namespaces.iter().find(|n| n.name == "chat:fetch");
        assert_eq!(namespace.and_then(|n| n.app.as_deref()), Some("chat"));

        let cases = [
            (format!("{rooms}{front}"), "namespaces[0].app"),
            (
                format!("{app}{rooms}[[routes]]\npath = \"/*\"\napp = \"chat\"\nnamespace = \"ROOMS\"\n"),
                "routes[0].app",
            ),
            (
                format!("{app}{rooms}[[namespaces]]\nname = \"R2\"\nclass = \"Room\"\n{front}"),
                "namespaces[1].class",
            ),
            (
                format!("[[apps]]\nname = \"chat\"\nmain = \"absent.js\"\n{rooms}{front}"),
                "apps[0].main",
            ),
            (format!("{app}{app}{rooms}{front}"), "apps[1].name"),
        ];
        for (text, key) in cases {
            let err = load(text.clone()).unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}\n{text}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = Config::from_toml("wokers = 3", "t.toml".into()).unwrap_err();
        assert!(err.to_string().contains("wokers"), "{err}");
    }

    #[test]
    fn id_sources_parse_and_bad_ones_name_the_choices() {
        let text = r#"
            [[namespaces]]
            name = "ROOMS"
            class = "ChatRoom"
            [[routes]]
            path = "/chat"
            namespace = "ROOMS"
            id = "query:room"
            [[routes]]
            path = "/by-id/{name}"
            namespace = "ROOMS"
            id = "hex"
            [[routes]]
            path = "/new"
            namespace = "ROOMS"
            id = "unique"
            [[routes]]
            path = "/h"
            namespace = "ROOMS"
            id = "header:X-Room"
        "#;
        let config = Config::from_toml(text, "t.toml".into())
            .unwrap()
            .validate()
            .unwrap();
        let ids: Vec<_> = config.routes.iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            ids,
            [
                IdSource::Query("room".into()),
                IdSource::Hex,
                IdSource::Unique,
                IdSource::Header("x-room".into())
            ]
        );
        let err = Config::from_toml(
            "[[routes]]\npath = \"/x\"\nnamespace = \"A\"\nid = \"random\"",
            "t.toml".into(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("query:PARAM"), "{err}");
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten s").is_err());
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let mut config = Config::default();
        config.limits.max_message_bytes = 64 << 20;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("limits.max_message_bytes"), "{err}");
        let mut config = Config::default();
        config.routes[0].path = "/rooms".into();
        assert!(config
            .clone()
            .validate()
            .unwrap_err()
            .to_string()
            .contains("routes[0].path"));
        config.routes[0].path = "/rooms/{name}".into();
        config.routes[0].namespace = "NOPE".into();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("routes[0].namespace"));
        let mut config = Config::default();
        config.prices.storage_usd_per_gb_month = -0.2;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("prices.storage_usd_per_gb_month"), "{err}");
    }

    #[test]
    fn route_auth_keys_are_checked_together_and_errors_name_the_key() {
        let route = |extra: &str| {
            let text = format!(
                "[[namespaces]]\nname = \"R\"\nclass = \"C\"\n\
                 [[namespaces]]\nname = \"S\"\nclass = \"C\"\n\
                 [[routes]]\npath = \"/open/{{name}}\"\nnamespace = \"R\"\n\
                 [[routes]]\npath = \"/r/{{name}}\"\nnamespace = \"S\"\n{extra}"
            );
            Config::from_toml(&text, "t.toml".into())
                .and_then(Config::validate)
                .map_err(|e| e.to_string())
        };
        let config = route("auth = \"hmac\"\nsecret = \"0123456789abcdef\"").unwrap();
        assert_eq!(config.routes[0].key, None);
        assert_eq!(config.routes[1].key.as_ref().map(Secret::len), Some(16));
        let refused = [
            ("auth = \"hmac\"", "routes[1].auth"),
            ("auth = \"hmac\"\nsecret = \"short\"", "routes[1].secret"),
            ("secret = \"0123456789abcdef\"", "routes[1].auth"),
            (
                "auth = \"hmac\"\nsecret = \"0123456789abcdef\"\nsecret_env = \"X\"",
                "routes[1].secret",
            ),
            (
                "auth = \"hmac\"\nsecret_env = \"TORPOR_TEST_UNSET_SECRET_VARIABLE\"",
                "routes[1].secret_env",
            ),
            ("origins = []", "routes[1].origins"),
            (
                "origins = [\"https://a.example\", \"https://b.example/\"]",
                "routes[1].origins[1]",
            ),
            ("auth = \"basic\"", "basic"),
        ];
        for (extra, key) in refused {
            let err = route(extra).unwrap_err();
            assert!(err.contains(key), "{extra:?}: {err}");
        }
        let err = route("auth = \"hmac\"\nsecret_env = \"TORPOR_TEST_UNSET_SECRET_VARIABLE\"")
            .unwrap_err();
        assert!(err.contains("TORPOR_TEST_UNSET_SECRET_VARIABLE"), "{err}");
        assert!(err.contains("/r/{name}"), "{err}");
        let mut config = Config::default();
        let unique = config
            .routes
            .iter()
            .position(|r| r.id == IdSource::Unique)
            .unwrap();
        config.routes[unique].auth = AuthMode::Hmac;
        config.routes[unique].secret = Some(Secret::new(vec![7; 16]));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(&format!("routes[{unique}].auth")), "{err}");
    }

    #[test]
    fn prices_are_read_from_their_table() {
        let config = Config::from_toml(
            "[prices]\nrequests_usd_per_million = 0.3\nduration_included_gb_s = 0",
            "t.toml".into(),
        )
        .unwrap();
        assert_eq!(config.prices.requests_usd_per_million, 0.3);
        assert_eq!(config.prices.duration_included_gb_s, 0.0);
        assert_eq!(config.prices.requests_included, 1_000_000);
        let err = Config::from_toml("[prices]\nrequest_usd = 1", "t.toml".into()).unwrap_err();
        assert!(err.to_string().contains("request_usd"), "{err}");
    }

    fn with_edges(edges: &str, max_connections: usize) -> Config {
        let text = format!("edges = {edges}\n[limits]\nmax_connections = {max_connections}\n");
        Config::from_toml(&text, "t.toml".into()).unwrap()
    }

    #[test]
    fn auto_edges_are_as_many_as_the_connections_need_at_the_files_limit() {
        // 20,000 files less 4,096 front-door connections and 258 of its own.
        let per_edge = 20_000 - 4096 - 256 - 2;
        assert_eq!(Config::default().sockets_per_edge(20_000), per_edge);
        let auto = |max| with_edges("\"auto\"", max).edges_for(20_000);
        assert_eq!(auto(1).unwrap(), 1);
        assert_eq!(auto(per_edge as usize).unwrap(), 1);
        assert_eq!(auto(per_edge as usize + 1).unwrap(), 2);
        assert_eq!(auto(1_000_000).unwrap(), 64);
        let err = auto(1_100_000).unwrap_err().to_string();
        assert!(err.contains("needs more than 64 edges"), "{err}");
        assert!(err.contains("an edge holds 15646 sockets"), "{err}");
        let err = auto(0).unwrap_err().to_string();
        assert!(err.contains("limits.max_connections, which is 0"), "{err}");
        // Unlimited files: one edge for anything.
        assert_eq!(
            with_edges("\"auto\"", 5_000_000)
                .edges_for(u64::MAX)
                .unwrap(),
            1
        );
    }

    #[test]
    fn a_number_of_edges_must_hold_max_connections() {
        assert_eq!(with_edges("2", 0).edges_for(20_000).unwrap(), 2);
        assert_eq!(with_edges("2", 31_292).edges_for(20_000).unwrap(), 2);
        let err = with_edges("2", 40_000)
            .edges_for(20_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("set edges = 3 or \"auto\""), "{err}");
        let err = with_edges("0", 0)
            .edges_for(20_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("0 is not within 1..=64"), "{err}");
        let err = with_edges("65", 0)
            .edges_for(20_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("65 is not within 1..=64"), "{err}");
        let err = Config::from_toml("edges = \"many\"", "t.toml".into()).unwrap_err();
        assert!(
            err.to_string().contains("neither a number of edges nor"),
            "{err}"
        );
    }

    #[test]
    fn each_edge_holds_its_share_of_max_connections() {
        let mut config = with_edges("3", 10);
        assert_eq!(config.max_sockets_per_edge(), 4);
        config.limits.max_connections = 0;
        assert_eq!(config.max_sockets_per_edge(), 0);
        let mut config = Config::default();
        config.set("edges", "auto").unwrap();
        assert_eq!(config.edges, Edges::Auto);
        config.set("edges", "4").unwrap();
        assert_eq!(config.edge_count(), 4);
        assert!(config.set("edges", "-1").is_err());
    }
}
