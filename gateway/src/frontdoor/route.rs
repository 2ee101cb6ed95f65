//! Route patterns: a fixed prefix, one `{name}` segment, a fixed suffix.

/// A parsed route such as `/rooms/{name}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePattern {
    prefix: String,
    suffix: String,
}

/// Longest object name taken from a path, in bytes.
const MAX_NAME_BYTES: usize = 256;

impl RoutePattern {
    /// `None` unless the path starts with `/` and holds exactly one
    /// `{name}` that is a whole segment.
    pub fn parse(path: &str) -> Option<RoutePattern> {
        let (prefix, suffix) = path.split_once("{name}")?;
        let well_formed = prefix.starts_with('/')
            && prefix.ends_with('/')
            && !suffix.contains("{name}")
            && (suffix.is_empty() || suffix.starts_with('/'));
        well_formed.then(|| RoutePattern {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The object name, if `path` matches.
    pub fn matches<'p>(&self, path: &'p str) -> Option<&'p str> {
        let name = path
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
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
        assert_eq!(RoutePattern::parse("/rooms"), None);
        assert_eq!(RoutePattern::parse("/rooms/x{name}"), None);
    }
}
