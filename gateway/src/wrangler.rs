//! Wrangler's config (`wrangler.toml`, `wrangler.json`, `wrangler.jsonc`)
//! as a Torpor config: what `torpor dev` serves. The app's `main` becomes
//! an `[[apps]]` entry, each `[[durable_objects.bindings]]` a namespace of
//! the app's class, `[vars]` the vars, and one route sends every path to
//! the app's default `fetch`; a `.dev.vars` file beside it adds vars, as
//! `wrangler dev` reads local secrets from it. Keys Torpor does not act on
//! are warned about by name, never dropped silently.
//!
//! Not here: anything of Cloudflare's account, deploy or bindings other
//! than Durable Objects (KV, R2, D1, queues, services), which Torpor does
//! not have.

use crate::config::ConfigError;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// Keys read, or harmless to ignore (metadata of the deploy).
const UNDERSTOOD: &[&str] = &[
    "$schema",
    "name",
    "main",
    "rules",
    "durable_objects",
    "migrations",
    "vars",
    "compatibility_date",
    "compatibility_flags",
];

/// Whether `path` names a wrangler config rather than a Torpor one.
pub fn is_wrangler_config(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("wrangler")
        && [".toml", ".json", ".jsonc"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// A Torpor config's TOML text for the wrangler config `text` read from
/// `path`, and the warnings for what it cannot honour. The app's data
/// goes in `.torpor/` beside the wrangler file, as wrangler keeps its own
/// in `.wrangler/`.
pub fn translate(path: &Path, text: &str) -> Result<(String, Vec<String>), ConfigError> {
    let parse = |message: String| ConfigError::Invalid {
        key: path.display().to_string(),
        message,
    };
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let root: Value = if is_toml {
        let table: toml::Table = toml::from_str(text).map_err(|e| parse(e.to_string()))?;
        serde_json::to_value(table).map_err(|e| parse(e.to_string()))?
    } else {
        serde_json::from_str(&strip_jsonc(text)).map_err(|e| parse(e.to_string()))?
    };
    let Value::Object(root) = root else {
        return Err(parse("not a table of keys".to_owned()));
    };
    let mut warnings = Vec::new();
    for key in root.keys() {
        if !UNDERSTOOD.contains(&key.as_str()) {
            warnings.push(format!("{key}: not supported by torpor dev; ignored"));
        }
    }
    let invalid = |key: &str, message: &str| ConfigError::Invalid {
        key: format!("{} {key}", path.display()),
        message: message.to_owned(),
    };
    let name = match root.get("name") {
        Some(Value::String(name)) if !name.is_empty() && !name.contains(':') => name.clone(),
        Some(_) => return Err(invalid("name", "must be a string without ':'")),
        None => "app".to_owned(),
    };
    let Some(Value::String(main)) = root.get("main") else {
        return Err(invalid("main", "the app's main module is required"));
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let data_dir = std::path::absolute(dir.join(".torpor").join("data"))
        .unwrap_or_else(|_| dir.join(".torpor").join("data"));

    let mut out = String::new();
    let _ = writeln!(out, "data_dir = {}", toml_str(&data_dir.to_string_lossy()));
    let migrated = migrated_classes(&root, &mut warnings);
    let mut namespaces = String::new();
    if let Some(durable) = root.get("durable_objects") {
        for key in durable.as_object().into_iter().flat_map(|o| o.keys()) {
            if key != "bindings" {
                warnings.push(format!(
                    "durable_objects.{key}: not supported by torpor dev; ignored"
                ));
            }
        }
        let bindings = durable.get("bindings").and_then(Value::as_array);
        for (i, binding) in bindings.into_iter().flatten().enumerate() {
            let at = format!("durable_objects.bindings[{i}]");
            let Some(binding) = binding.as_object() else {
                return Err(invalid(&at, "must be a table"));
            };
            for key in binding.keys() {
                if !["name", "class_name"].contains(&key.as_str()) {
                    warnings.push(format!(
                        "{at}.{key}: not supported by torpor dev (objects of other scripts); ignored"
                    ));
                }
            }
            let (Some(binding_name), Some(class)) = (
                binding.get("name").and_then(Value::as_str),
                binding.get("class_name").and_then(Value::as_str),
            ) else {
                return Err(invalid(&at, "needs name and class_name"));
            };
            if !migrated.iter().any(|c| c == class) {
                warnings.push(format!(
                    "{at}: class {class} is in no [[migrations]] new_classes or new_sqlite_classes; \
                     Cloudflare refuses that deploy"
                ));
            }
            let _ = writeln!(
                namespaces,
                "\n[[namespaces]]\nname = {}\nclass = {}\napp = {}",
                toml_str(binding_name),
                toml_str(class),
                toml_str(&name)
            );
        }
    }
    let mut vars = std::collections::BTreeMap::new();
    if let Some(table) = root.get("vars") {
        let Some(table) = table.as_object() else {
            return Err(invalid("vars", "must be a table"));
        };
        for (key, value) in table {
            let text = match value {
                Value::String(s) => s.clone(),
                other => {
                    warnings.push(format!(
                        "vars.{key}: only string vars are supported; env.{key} is its JSON text"
                    ));
                    other.to_string()
                }
            };
            vars.insert(key.clone(), text);
        }
    }
    // What `wrangler dev` reads for local secrets, beside the config.
    if let Ok(text) = std::fs::read_to_string(dir.join(".dev.vars")) {
        vars.extend(dev_vars(&text));
    }
    if !vars.is_empty() {
        out.push_str("\n[vars]\n");
        for (key, text) in &vars {
            let _ = writeln!(out, "{} = {}", toml_str(key), toml_str(text));
        }
    }
    let _ = writeln!(
        out,
        "\n[[apps]]\nname = {}\nmain = {}",
        toml_str(&name),
        toml_str(main)
    );
    if let Some(rules) = root.get("rules") {
        let rules: toml::Value =
            serde_json::from_value(rules.clone()).map_err(|e| invalid("rules", &e.to_string()))?;
        let _ = writeln!(out, "rules = {rules}");
    }
    out.push_str(&namespaces);
    let _ = writeln!(
        out,
        "\n[[routes]]\npath = \"/*\"\napp = {}",
        toml_str(&name)
    );
    Ok((out, warnings))
}

/// The classes `[[migrations]]` create; warns about the steps Torpor does
/// not carry out (renames, deletions, transfers).
fn migrated_classes(
    root: &serde_json::Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut classes = Vec::new();
    let steps = root.get("migrations").and_then(Value::as_array);
    for (i, step) in steps.into_iter().flatten().enumerate() {
        for (key, value) in step.as_object().into_iter().flatten() {
            match key.as_str() {
                "tag" => {}
                "new_classes" | "new_sqlite_classes" => classes.extend(
                    value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned),
                ),
                other => warnings.push(format!(
                    "migrations[{i}].{other}: not supported by torpor dev (objects keep their \
                     class's data directory); ignored"
                )),
            }
        }
    }
    classes
}

/// `KEY=value` lines of a `.dev.vars` file (dotenv): `#` comments, and
/// values optionally in single or double quotes.
fn dev_vars(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let unquoted = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|&(open, close)| value.strip_prefix(open)?.strip_suffix(close))
                .unwrap_or(value);
            Some((key.trim().to_owned(), unquoted.to_owned()))
        })
        .collect()
}

fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// JSON with comments and trailing commas (wrangler.jsonc) as plain JSON.
fn strip_jsonc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            _ => out.push(c),
        }
    }
    drop_trailing_commas(&out)
}

fn drop_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut in_string = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' && i + 1 < chars.len() {
                out.push(chars[i + 1]);
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if !matches!(next, Some('}') | Some(']')) {
                out.push(c);
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_wrangler_toml_becomes_an_app_its_namespaces_and_a_route_to_its_fetch() {
        let text = r#"
name = "chat"
main = "src/index.js"
compatibility_date = "2025-01-01"
kv_namespaces = [{ binding = "KV", id = "x" }]

[[durable_objects.bindings]]
name = "ROOMS"
class_name = "ChatRoom"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["ChatRoom"]
renamed_classes = [{ from = "A", to = "B" }]

[[rules]]
type = "Data"
globs = ["**/*.html"]
fallthrough = false

[vars]
GREETING = "hi"
LIMIT = 3
"#;
        let path = Path::new("/app/wrangler.toml");
        let (toml, warnings) = translate(path, text).unwrap();
        let config = Config::from_toml(&toml, path.to_owned()).unwrap();
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].name, "chat");
        assert_eq!(config.apps[0].main, Path::new("/app/src/index.js"));
        assert_eq!(config.namespaces.len(), 1);
        assert_eq!(config.namespaces[0].class, "ChatRoom");
        assert_eq!(config.namespaces[0].app.as_deref(), Some("chat"));
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.routes[0].path, "/*");
        assert_eq!(config.vars["GREETING"], "hi");
        assert_eq!(config.vars["LIMIT"], "3");
        assert_eq!(config.data_dir, Path::new("/app/.torpor/data"));
        assert_eq!(config.apps[0].rules[0].kind, "Data");
        assert_eq!(config.apps[0].rules[0].globs, ["**/*.html"]);
        let joined = warnings.join("\n");
        for key in [
            "kv_namespaces",
            "migrations[0].renamed_classes",
            "vars.LIMIT",
        ] {
            assert!(joined.contains(key), "no warning for {key}: {joined}");
        }
        assert!(!joined.contains("compatibility_date"), "{joined}");
    }

    #[test]
    fn jsonc_comments_and_trailing_commas_are_read() {
        let text = r#"{
  // the app
  "name": "lab", /* inline */
  "main": "src/index.js",
  "vars": { "URL": "http://x//y", },
  "durable_objects": { "bindings": [ { "name": "LAB", "class_name": "Lab", }, ], },
}"#;
        let (toml, warnings) = translate(Path::new("/w/wrangler.jsonc"), text).unwrap();
        let config = Config::from_toml(&toml, "/w/wrangler.jsonc".into()).unwrap();
        assert_eq!(config.vars["URL"], "http://x//y");
        assert_eq!(config.namespaces[0].name, "LAB");
        assert!(
            warnings.iter().any(|w| w.contains("no [[migrations]]")),
            "{warnings:?}"
        );
    }

    #[test]
    fn dev_vars_are_read_as_dotenv() {
        let vars = dev_vars("# local\nAPI_KEY=\"a=b\"\n\nTOKEN = 'x y'\nPLAIN=1\nbroken\n");
        assert_eq!(
            vars,
            [("API_KEY", "a=b"), ("TOKEN", "x y"), ("PLAIN", "1")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn wrangler_configs_are_told_apart_by_name() {
        assert!(is_wrangler_config(Path::new("a/wrangler.toml")));
        assert!(is_wrangler_config(Path::new("wrangler.jsonc")));
        assert!(!is_wrangler_config(Path::new("config/torpor.toml")));
    }
}
