//! Route patterns: a fixed prefix, one `{name}` segment, a fixed suffix; a
//! fixed path when the object's id comes from the query or a header; or a
//! prefix ending in `/*` for everything under it (a JavaScript app's front).

/// A parsed route such as `/rooms/{name}` or `/chat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePattern {
    prefix: String,
    /// `None` for a fixed path.
    suffix: Option<String>,
    /// `/prefix/*`: every path under the prefix, and the prefix itself.
    rest: bool,
}

/// Longest object name taken from a path, in bytes.
const MAX_NAME_BYTES: usize = 256;

impl RoutePattern {
    /// `None` unless the path starts with `/` and holds at most one
    /// `{name}`, as a whole segment.
    pub fn parse(path: &str) -> Option<RoutePattern> {
        if !path.starts_with('/') {
            return None;
        }
        if let Some(prefix) = path.strip_suffix('*') {
            let well_formed = prefix.ends_with('/') && !prefix.contains(['*', '{']);
            return well_formed.then(|| RoutePattern {
                prefix: prefix.to_owned(),
                suffix: None,
                rest: true,
            });
        }
        let Some((prefix, suffix)) = path.split_once("{name}") else {
            return Some(RoutePattern {
                prefix: path.to_owned(),
                suffix: None,
                rest: false,
            });
        };
        let well_formed = prefix.ends_with('/')
            && !suffix.contains("{name}")
            && (suffix.is_empty() || suffix.starts_with('/'));
        well_formed.then(|| RoutePattern {
            prefix: prefix.to_owned(),
            suffix: Some(suffix.to_owned()),
            rest: false,
        })
    }

    /// Whether the pattern has a `{name}` segment.
    pub fn has_name(&self) -> bool {
        self.suffix.is_some()
    }

    /// The `{name}` segment if `path` matches (empty for a fixed path).
    pub fn matches<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.rest {
            let under = path.starts_with(self.prefix.as_str())
                || Some(path) == self.prefix.strip_suffix('/').filter(|p| !p.is_empty());
            return under.then_some("");
        }
        let Some(suffix) = self.suffix.as_deref() else {
            return (path == self.prefix).then_some("");
        };
        let name = path
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(suffix)?;
        let valid = !name.is_empty() && name.len() <= MAX_NAME_BYTES && !name.contains('/');
        valid.then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_one_whole_segment() {
        let route = RoutePattern::parse("/rooms/{name}").unwrap();
        assert_eq!(route.matches("/rooms/lobby"), Some("lobby"));
        assert_eq!(route.matches("/rooms/"), None);
        assert_eq!(route.matches("/rooms/a/b"), None);
        assert_eq!(route.matches("/roomsx/a"), None);
        let nested = RoutePattern::parse("/g/{name}/ws").unwrap();
        assert_eq!(nested.matches("/g/match-1/ws"), Some("match-1"));
        assert_eq!(RoutePattern::parse("/rooms/x{name}"), None);
        assert_eq!(RoutePattern::parse("rooms/{name}"), None);
        let fixed = RoutePattern::parse("/chat").unwrap();
        assert!(!fixed.has_name());
        assert_eq!(fixed.matches("/chat"), Some(""));
        assert_eq!(fixed.matches("/chat/x"), None);
    }

    #[test]
    fn a_star_route_takes_everything_under_its_prefix() {
        let all = RoutePattern::parse("/*").unwrap();
        assert!(!all.has_name());
        assert_eq!(all.matches("/"), Some(""));
        assert_eq!(all.matches("/rooms/a?x"), Some(""));
        let app = RoutePattern::parse("/app/*").unwrap();
        assert_eq!(app.matches("/app"), Some(""));
        assert_eq!(app.matches("/app/x/y"), Some(""));
        assert_eq!(app.matches("/apps"), None);
        assert_eq!(RoutePattern::parse("/a*"), None);
        assert_eq!(RoutePattern::parse("/{name}/*"), None);
    }
}
