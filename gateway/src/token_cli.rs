//! `torpor token`: mints a token for one object of an `auth = "hmac"`
//! route, as an application server would, and prints it on stdout.
//!
//! This file is the command line only: arguments, finding the route,
//! resolving the object id the way the front door does, and exit codes. The
//! token format and its check are [`crate::frontdoor::auth`].
//!
//! Exit codes: 0 with a token; 64 (usage) on bad arguments or a path no
//! route can mint for; 78 (config) when the route has no secret (auth is
//! none); 74 (I/O) when the node secret cannot be read or the token written.

use crate::config::{parse_duration, Config, IdSource, Route};
use crate::frontdoor::auth::{self, AuthMode};
use crate::frontdoor::RoutePattern;
use std::io::{self, Write};
use std::process::ExitCode;
use torpor_objects::ids::{load_or_create_secret, NamespaceKey, SECRET_FILE};

/// Shown after the flags in `torpor token --help`.
pub const AFTER_HELP: &str = "\
Clients present the token as `Authorization: Bearer TOKEN`, as the
WebSocket subprotocol `torpor-token.TOKEN`, or as the query parameter
`token=TOKEN`. The route's secret and data_dir (for the node secret) come
from the config. The object id is derived from the node secret in
data_dir, as the front door derives it, so run this where the node's
data_dir is.";

const EXIT_USAGE: u8 = 64;
const EXIT_IO: u8 = 74;
const EXIT_CONFIG: u8 = 78;

/// What `torpor token` was asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct TokenArgs {
    /// A request path, e.g. /rooms/lobby or /chat?room=lobby.
    #[arg(long, value_name = "PATH")]
    pub route: String,
    /// How long the token stays valid (30s, 10m, 1h).
    #[arg(long = "ttl", value_name = "DURATION", value_parser = ttl_secs)]
    pub ttl_secs: u64,
    /// The object's name on a query:PARAM or header:NAME route (instead of
    /// putting it in PATH's query).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// A duration of at least a second, in whole seconds.
fn ttl_secs(text: &str) -> Result<u64, String> {
    let duration = parse_duration(text)?;
    if duration.as_secs() == 0 {
        return Err("must be at least 1s (expiry is in whole seconds)".to_owned());
    }
    Ok(duration.as_secs())
}

/// Why `torpor token` cannot mint.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenCliError {
    /// No route matches the path.
    #[error("no route matches {0}")]
    NoRoute(String),
    /// The route cannot name one object for a token.
    #[error("route {route}: {reason}")]
    Unmintable {
        /// The route's pattern.
        route: String,
        /// Why.
        reason: String,
    },
    /// The route takes no token.
    #[error("route {0} has auth none and takes no token; set auth = \"hmac\" and a secret")]
    NoAuth(String),
}

impl TokenCliError {
    fn exit_code(&self) -> u8 {
        match self {
            TokenCliError::NoAuth(_) => EXIT_CONFIG,
            _ => EXIT_USAGE,
        }
    }
}

/// The route `path` reaches, and the name or hex id it names the object by,
/// as the front door would resolve it.
fn resolve<'c>(
    config: &'c Config,
    args: &TokenArgs,
) -> Result<(&'c Route, ObjectName), TokenCliError> {
    let (path, query) = args
        .route
        .split_once('?')
        .unwrap_or((args.route.as_str(), ""));
    let (route, segment) = config
        .routes
        .iter()
        .find_map(|r| Some((r, RoutePattern::parse(&r.path)?.matches(path)?)))
        .ok_or_else(|| TokenCliError::NoRoute(path.to_owned()))?;
    let unmintable = |reason: String| TokenCliError::Unmintable {
        route: route.path.clone(),
        reason,
    };
    let named = |name: Option<&str>, what: &str| match name {
        Some(name) if !name.is_empty() => Ok(ObjectName::Name(name.to_owned())),
        _ => Err(unmintable(format!(
            "the object's name comes from {what}; give --name NAME"
        ))),
    };
    let name = match &route.id {
        IdSource::Name => ObjectName::Name(segment.to_owned()),
        IdSource::Hex => ObjectName::Hex(segment.to_owned()),
        IdSource::Unique => {
            return Err(unmintable(
                "a unique route makes a new object per request, so it cannot have tokens"
                    .to_owned(),
            ))
        }
        IdSource::Query(param) => {
            let in_path = query.split('&').find_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key == param).then_some(value)
            });
            named(
                args.name.as_deref().or(in_path),
                &format!("query parameter {param}"),
            )?
        }
        IdSource::Header(header) => named(args.name.as_deref(), &format!("header {header}"))?,
    };
    Ok((route, name))
}

enum ObjectName {
    Name(String),
    Hex(String),
}

/// Runs `torpor token` on a loaded, validated config.
pub fn run(args: &TokenArgs, config: &Config) -> ExitCode {
    let (route, name) = match resolve(config, args) {
        Ok(resolved) => resolved,
        Err(err) => return fail(&err),
    };
    let secret = match (route.auth, &route.key) {
        (AuthMode::Hmac, Some(secret)) => secret,
        _ => return fail(&TokenCliError::NoAuth(route.path.clone())),
    };
    let existed = config.data_dir.join(SECRET_FILE).exists();
    let node_secret = match load_or_create_secret(&config.data_dir) {
        Ok(secret) => secret,
        Err(err) => {
            eprintln!(
                "torpor token: cannot read the node secret in {}: {err}",
                config.data_dir.display()
            );
            return ExitCode::from(EXIT_IO);
        }
    };
    if !existed {
        // Not an error (the node will use this secret when it starts here),
        // but a wrong data_dir would mint tokens for ids no node has.
        eprintln!(
            "torpor token: note: created a new node secret in {}",
            config.data_dir.display()
        );
    }
    let key = NamespaceKey::derive(&node_secret, &route.namespace);
    let id = match name {
        ObjectName::Name(name) => key.id_from_name(&name),
        ObjectName::Hex(hex) => match key.id_from_string(&hex) {
            Ok(id) => id,
            Err(err) => {
                return fail(&TokenCliError::Unmintable {
                    route: route.path.clone(),
                    reason: err.to_string(),
                })
            }
        },
    };
    let expiry = auth::unix_now().saturating_add(args.ttl_secs);
    write_out(&auth::mint(secret, &id, expiry))
}

fn fail(err: &TokenCliError) -> ExitCode {
    eprintln!("torpor token: {err}");
    ExitCode::from(err.exit_code())
}

fn write_out(text: &str) -> ExitCode {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("torpor token: cannot write the token: {err}");
            ExitCode::from(EXIT_IO)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `torpor token`'s flags alone, as the node's command line takes them.
    #[derive(Debug, clap::Parser)]
    struct Token {
        #[command(flatten)]
        args: TokenArgs,
    }

    fn parse_args(args: &[&str]) -> Result<TokenArgs, clap::Error> {
        use clap::Parser;
        Token::try_parse_from(std::iter::once("token").chain(args.iter().copied())).map(|t| t.args)
    }

    #[test]
    fn arguments_parse_and_bad_ones_name_the_flag() {
        let parsed = parse_args(&["--route", "/rooms/lobby", "--ttl", "1h"]).unwrap();
        assert_eq!(parsed.route, "/rooms/lobby");
        assert_eq!(parsed.ttl_secs, 3600);
        let err = |args: &[&str]| parse_args(args).unwrap_err().to_string();
        assert!(err(&["--route", "/r"]).contains("--ttl"));
        assert!(err(&["--route"]).contains("--route <PATH>"));
        assert!(err(&["--route", "/a", "--route", "/b", "--ttl", "1h"]).contains("--route"));
        assert!(err(&["--route", "/a", "--ttl", "500ms"]).contains("at least 1s"));
        assert!(err(&["--route", "/a", "--ttl", "10"]).contains("--ttl"));
    }

    #[test]
    fn routes_resolve_as_the_front_door_does_and_unique_ones_are_refused() {
        let config = Config::default();
        let resolve_name = |list: &[&str]| {
            let parsed = parse_args(list).unwrap();
            resolve(&config, &parsed).map(|(route, name)| {
                let name = match name {
                    ObjectName::Name(n) | ObjectName::Hex(n) => n,
                };
                (route.path.clone(), name)
            })
        };
        assert_eq!(
            resolve_name(&["--route", "/rooms/lobby", "--ttl", "1h"]),
            Ok(("/rooms/{name}".to_owned(), "lobby".to_owned()))
        );
        assert_eq!(
            resolve_name(&["--route", "/chat?room=lobby", "--ttl", "1h"]),
            Ok(("/chat".to_owned(), "lobby".to_owned()))
        );
        assert_eq!(
            resolve_name(&["--route", "/chat", "--ttl", "1h", "--name", "x"]),
            Ok(("/chat".to_owned(), "x".to_owned()))
        );
        assert!(matches!(
            resolve_name(&["--route", "/chat", "--ttl", "1h"]),
            Err(TokenCliError::Unmintable { .. })
        ));
        let unique = resolve_name(&["--route", "/counters", "--ttl", "1h"]).unwrap_err();
        assert!(
            unique.to_string().contains("cannot have tokens"),
            "{unique}"
        );
        assert_eq!(
            resolve_name(&["--route", "/nope", "--ttl", "1h"]),
            Err(TokenCliError::NoRoute("/nope".to_owned()))
        );
    }
}
