//! Authentication at the edge: a per-route HMAC token and an optional Origin
//! allowlist, checked after the route has resolved the object id and before
//! anything is sent to the hold loop. A refused request therefore wakes
//! nothing, bills nothing, and costs the node one small response (counted by
//! status in `torpor_frontdoor_rejects_total`).
//!
//! Not here: who may mint tokens (whoever holds the route's secret, usually
//! an application server, or an operator with `torpor token`), and any
//! authorization inside the object (its `fetch` still sees the request).
//!
//! # Tokens
//!
//! `<expiry>.<mac>`: `expiry` is unix seconds in decimal; `mac` is the
//! base64url (no padding) HMAC-SHA256, under the route's secret, of
//! `"<object id hex>.<expiry>"`. The object id is the one the route resolves
//! (64 lowercase hex characters), so a token for `/rooms/lobby` opens that
//! object only, and it opens it under every route and namespace that resolve
//! to that id with the same secret. A token is valid while `now < expiry`.
//! The MAC is checked first, in constant time (`verify_slice`), and expiry
//! only after it, so "token expired" is said of genuine tokens only.
//!
//! A client presents the token in one of three places, looked for in this
//! order: `Authorization: Bearer <token>`; a `Sec-WebSocket-Protocol` entry
//! `torpor-token.<token>` (browsers cannot set headers on a WebSocket, but
//! they can offer subprotocols; every token character is a valid token
//! character there); or the query parameter `token=<token>` (base64url needs
//! no percent-encoding). After a successful check the edge removes the token
//! from all three before the object sees the request, so it never reaches
//! the object, its logs, or anything it forwards.
//!
//! # The subprotocol answer
//!
//! A browser fails a connection that offered subprotocols and got none back,
//! and fails one that got back a protocol it did not offer. The 101 answers,
//! in this order of preference:
//!
//! 1. whatever the object chose from the protocols left after the token
//!    entry was removed (the object speaks its own protocols);
//! 2. `torpor`, when the client offered it next to the token entry, e.g.
//!    `new WebSocket(url, ["torpor", "torpor-token." + token])`. This is the
//!    recommended form: the token then never appears in a response, and
//!    `ws.protocol` reads `torpor`;
//! 3. otherwise the token entry itself, echoed, so that a client that
//!    offered only `torpor-token.<token>` still connects. Echoing sends the
//!    token back only to the client that sent it, on the same connection, so
//!    nothing new learns it; a fixed name alone could not work here, since
//!    an answer the client did not offer fails the connection.
//!
//! Tokens are never logged: refusals log the reason only.

use super::reject::reject;
use super::Reply;
use base64::Engine;
use hmac::{Hmac, Mac};
use hyper::header::{HeaderValue, AUTHORIZATION, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Request, StatusCode, Uri};
use serde::{Deserialize, Deserializer};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use torpor_objects::ids::ObjectId;
use tracing::debug;

type HmacSha256 = Hmac<Sha256>;

/// The subprotocol entry prefix that carries a token.
pub const SUBPROTOCOL_PREFIX: &str = "torpor-token.";
/// The fixed subprotocol a client may offer next to its token entry, so
/// that the 101 answers it instead of echoing the token.
pub const SUBPROTOCOL_NAME: &str = "torpor";
/// The query parameter that carries a token.
pub const QUERY_PARAM: &str = "token";
/// Shortest route secret accepted, in bytes: shorter keys are guessable.
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest token looked at, in bytes; a real one is under 70.
const MAX_TOKEN_BYTES: usize = 256;
/// Length of the MAC in a token, in bytes (HMAC-SHA256).
const MAC_BYTES: usize = 32;

/// A route's `auth`: who may reach its objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone (the Origin allowlist still applies when set).
    #[default]
    None,
    /// Only requests with a valid token for the object.
    Hmac,
}

impl std::fmt::Display for AuthMode {
    /// As the config spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthMode::None => "none",
            AuthMode::Hmac => "hmac",
        })
    }
}

/// A route's HMAC secret. Its `Debug` does not show it, so that printing a
/// config never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// The secret of these bytes (the UTF-8 of the configured text).
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Arc::from(bytes))
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn mac(&self, id: &ObjectId, expiry: &str) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.0).expect("hmac accepts any key length");
        mac.update(id.to_hex().as_bytes());
        mac.update(b".");
        mac.update(expiry.as_bytes());
        mac
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        Ok(Secret::new(String::deserialize(deserializer)?.into_bytes()))
    }
}

/// The token for object `id` valid until `expiry` (unix seconds).
pub fn mint(secret: &Secret, id: &ObjectId, expiry: u64) -> String {
    let expiry = expiry.to_string();
    let mac = secret.mac(id, &expiry).finalize().into_bytes();
    let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac);
    format!("{expiry}.{mac}")
}

/// Why a presented token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `<digits>.<base64url of 32 bytes>`.
    #[error("token invalid")]
    Malformed,
    /// The MAC does not match: another object, another secret, or forged.
    #[error("token invalid")]
    BadSignature,
    /// Genuine, but its expiry has passed.
    #[error("token expired")]
    Expired,
}

impl TokenError {
    /// The short reason a client is told.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed | TokenError::BadSignature => "token invalid",
            TokenError::Expired => "token expired",
        }
    }
}

/// Checks `token` for object `id` at `now` (unix seconds).
pub fn verify(secret: &Secret, id: &ObjectId, token: &str, now: u64) -> Result<(), TokenError> {
    // Nothing longer can be a token; do not decode it.
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let (expiry_text, mac_text) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let digits = !expiry_text.is_empty() && expiry_text.bytes().all(|b| b.is_ascii_digit());
    let expiry: u64 = match digits.then(|| expiry_text.parse()) {
        Some(Ok(expiry)) => expiry,
        _ => return Err(TokenError::Malformed),
    };
    let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(mac_text)
        .map_err(|_| TokenError::Malformed)?;
    if mac.len() != MAC_BYTES {
        return Err(TokenError::Malformed);
    }
    secret
        .mac(id, expiry_text)
        .verify_slice(&mac)
        .map_err(|_| TokenError::BadSignature)?;
    if now >= expiry {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// Unix seconds now; 0 if the clock is before 1970, which expires every token.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a route demands of a token.
#[derive(Clone, Debug)]
enum TokenRule {
    Open,
    Hmac(Secret),
    /// `auth = "hmac"` on a config that was never validated: refuse all,
    /// never let a request through unchecked.
    Unloaded,
}

/// A route's checks, built once from its config.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    /// Allowed `Origin` values, lowercase; `None` allows any.
    origins: Option<Vec<String>>,
    token: TokenRule,
}

/// What a request that passed brings to its response: how the 101 answers
/// the subprotocol when the token came as one.
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    /// The `torpor-token.` entry the client offered, to echo as a last resort.
    token_entry: Option<String>,
    /// Whether the client also offered [`SUBPROTOCOL_NAME`].
    offered_name: bool,
}

impl Guard {
    /// The checks of a validated route.
    pub(crate) fn from_route(route: &crate::config::Route) -> Guard {
        let token = match (route.auth, &route.key) {
            (AuthMode::None, _) => TokenRule::Open,
            (AuthMode::Hmac, Some(key)) => TokenRule::Hmac(key.clone()),
            (AuthMode::Hmac, None) => TokenRule::Unloaded,
        };
        Guard {
            origins: route
                .origins
                .as_ref()
                .map(|list| list.iter().map(|o| o.to_ascii_lowercase()).collect()),
            token,
        }
    }

    /// Lets `request` through to object `id`, with its token removed, or
    /// returns the refusal: 403 for an Origin not allowed, 401 for a token
    /// missing, invalid or expired.
    pub(crate) fn check<B>(
        &self,
        request: &mut Request<B>,
        id: &ObjectId,
        now: u64,
    ) -> Result<Admitted, Refusal> {
        if let Some(origins) = &self.origins {
            let origin = request.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
            let allowed = origin.is_some_and(|o| origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
            if !allowed {
                let reason = if origin.is_some() {
                    "origin not allowed"
                } else {
                    "origin missing"
                };
                return Err(Refusal::Forbidden(reason));
            }
        }
        let secret = match &self.token {
            TokenRule::Open => return Ok(Admitted::default()),
            TokenRule::Hmac(secret) => secret,
            TokenRule::Unloaded => return Err(Refusal::Unloaded),
        };
        let Some(token) = presented(request) else {
            return Err(Refusal::Unauthorized(None));
        };
        verify(secret, id, &token, now).map_err(|err| Refusal::Unauthorized(Some(err)))?;
        Ok(strip(request))
    }
}

impl Admitted {
    /// Answers the subprotocol on a 101 the object left without one (see
    /// the module docs for why).
    pub(crate) fn answer(self, response: &mut Reply) {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS
            || response.headers().contains_key(SEC_WEBSOCKET_PROTOCOL)
        {
            return;
        }
        let answer = if self.offered_name {
            Some(HeaderValue::from_static(SUBPROTOCOL_NAME))
        } else {
            self.token_entry
                .and_then(|entry| HeaderValue::from_str(&entry).ok())
        };
        if let Some(answer) = answer {
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_PROTOCOL, answer);
        }
    }
}

/// Why a request may not pass; [`Refusal::reply`] is its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 403: the Origin is missing or not listed.
    Forbidden(&'static str),
    /// 401: no token (`None`), or the token's fault.
    Unauthorized(Option<TokenError>),
    /// 500: an hmac route without its key (a config never validated).
    Unloaded,
}

impl Refusal {
    /// The answer, counted by status in `reject`; 401 carries the RFC 6750
    /// challenge. Logged with its reason only, never the token.
    pub(crate) fn reply(self) -> Reply {
        match self {
            Refusal::Forbidden(reason) => {
                debug!(reason, "request refused at the edge");
                reject(StatusCode::FORBIDDEN, reason)
            }
            Refusal::Unauthorized(error) => unauthorized(error),
            Refusal::Unloaded => {
                reject(StatusCode::INTERNAL_SERVER_ERROR, "route secret not loaded")
            }
        }
    }
}

/// A 401 with the RFC 6750 challenge; `error` set when a token was given.
fn unauthorized(error: Option<TokenError>) -> Reply {
    let reason = error.map_or("token missing", TokenError::reason);
    debug!(reason, "request refused at the edge");
    let mut reply = reject(StatusCode::UNAUTHORIZED, reason);
    let challenge = match error {
        // RFC 6750 §3.1: no error code when no token was presented.
        None => "Bearer realm=\"torpor\"".to_owned(),
        Some(_) => {
            format!(
                "Bearer realm=\"torpor\", error=\"invalid_token\", error_description=\"{reason}\""
            )
        }
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        reply
            .headers_mut()
            .insert(hyper::header::WWW_AUTHENTICATE, value);
    }
    reply
}

/// The token a request presents, from the first place that has one.
fn presented<B>(request: &Request<B>) -> Option<String> {
    let headers = request.headers();
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .find_map(|value| bearer_token(value.to_str().ok()?));
    let entry = || {
        protocol_entries(request)
            .find_map(|entry| entry.strip_prefix(SUBPROTOCOL_PREFIX).map(str::to_owned))
    };
    let query = || {
        query_pairs(request.uri())
            .find_map(|(key, value)| (key == QUERY_PARAM).then(|| value.to_owned()))
    };
    bearer.map(str::to_owned).or_else(entry).or_else(query)
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn protocol_entries<B>(request: &Request<B>) -> impl Iterator<Item = String> + '_ {
    request
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|entry| entry.trim().to_owned())
        .filter(|entry| !entry.is_empty())
}

fn query_pairs(uri: &Uri) -> impl Iterator<Item = (&str, &str)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Removes the token from the three places it may be, so the object never
/// sees it, and notes how the 101 should answer the subprotocol.
fn strip<B>(request: &mut Request<B>) -> Admitted {
    let mut admitted = Admitted::default();

    let bearer = request
        .headers()
        .get_all(AUTHORIZATION)
        .iter()
        .any(|value| value.to_str().ok().and_then(bearer_token).is_some());
    if bearer {
        request.headers_mut().remove(AUTHORIZATION);
    }

    let entries: Vec<String> = protocol_entries(request).collect();
    if entries.iter().any(|e| e.starts_with(SUBPROTOCOL_PREFIX)) {
        admitted.offered_name = entries.iter().any(|e| e == SUBPROTOCOL_NAME);
        let (tokens, rest): (Vec<String>, Vec<String>) = entries
            .into_iter()
            .partition(|e| e.starts_with(SUBPROTOCOL_PREFIX));
        admitted.token_entry = tokens.into_iter().next();
        let headers = request.headers_mut();
        headers.remove(SEC_WEBSOCKET_PROTOCOL);
        if let Ok(value) = HeaderValue::from_str(&rest.join(", ")) {
            if !rest.is_empty() {
                headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
            }
        }
    }

    let uri = request.uri();
    if query_pairs(uri).any(|(key, _)| key == QUERY_PARAM) {
        let kept: Vec<String> = query_pairs(uri)
            .filter(|(key, _)| *key != QUERY_PARAM)
            .map(|(key, value)| {
                if value.is_empty() {
                    key.to_owned()
                } else {
                    format!("{key}={value}")
                }
            })
            .collect();
        let path_and_query = if kept.is_empty() {
            uri.path().to_owned()
        } else {
            format!("{}?{}", uri.path(), kept.join("&"))
        };
        let mut parts = uri.clone().into_parts();
        // Only reached with a valid path and query already parsed once; if
        // the rebuilt one were refused, keeping the old URI only shows the
        // object a token it could not use.
        if let Ok(pq) = path_and_query.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(stripped) = Uri::from_parts(parts) {
                *request.uri_mut() = stripped;
            }
        }
    }
    admitted
}

#[cfg(test)]
mod tests {
    use super::*;
    use torpor_objects::ids::NamespaceKey;

    fn secret() -> Secret {
        Secret::new(b"0123456789abcdef0123".to_vec())
    }

    fn ids() -> (ObjectId, ObjectId) {
        let key = NamespaceKey::derive(b"node secret", "ROOMS");
        (key.id_from_name("lobby"), key.id_from_name("other"))
    }

    #[test]
    fn a_minted_token_opens_its_object_until_it_expires() {
        let (lobby, other) = ids();
        let token = mint(&secret(), &lobby, 1_000);
        assert_eq!(verify(&secret(), &lobby, &token, 999), Ok(()));
        assert_eq!(
            verify(&secret(), &lobby, &token, 1_000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(&secret(), &other, &token, 999),
            Err(TokenError::BadSignature)
        );
        let wrong = Secret::new(b"another secret of 16+".to_vec());
        assert_eq!(
            verify(&wrong, &lobby, &token, 999),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_changed_expiry_breaks_the_signature() {
        let (lobby, _) = ids();
        let token = mint(&secret(), &lobby, 1_000);
        let forged = token.replacen("1000", "9000", 1);
        assert_eq!(
            verify(&secret(), &lobby, &forged, 999),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        let (lobby, _) = ids();
        for token in [
            "",
            ".",
            "1000",
            "1000.",
            ".abc",
            "-5.abc",
            "+5.AAAA",
            "99999999999999999999999.AAAA",
            "1000.!!!!",
            "1000.AAAA",
            "1000.a.b",
        ] {
            assert_eq!(
                verify(&secret(), &lobby, token, 0),
                Err(TokenError::Malformed),
                "{token:?}"
            );
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let shown = format!("{:?}", secret());
        assert!(!shown.contains("0123"), "{shown}");
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn guard(origins: Option<&[&str]>) -> Guard {
        Guard {
            origins: origins.map(|o| o.iter().map(|s| s.to_string()).collect()),
            token: TokenRule::Hmac(secret()),
        }
    }

    #[test]
    fn tokens_are_found_in_each_place_and_removed_before_the_object() {
        let (lobby, _) = ids();
        let token = mint(&secret(), &lobby, 2_000);
        let entry = format!("{SUBPROTOCOL_PREFIX}{token}");
        let bearer = format!("Bearer {token}");

        let mut by_query = request(&format!("/r/lobby?a=1&token={token}&b"), &[]);
        guard(None).check(&mut by_query, &lobby, 1_000).unwrap();
        assert_eq!(by_query.uri().path_and_query().unwrap(), "/r/lobby?a=1&b");

        let mut by_header = request("/r/lobby", &[("authorization", &bearer)]);
        guard(None).check(&mut by_header, &lobby, 1_000).unwrap();
        assert!(by_header.headers().get(AUTHORIZATION).is_none());

        let offered = format!("chat, {entry}");
        let mut by_protocol = request("/r/lobby", &[("sec-websocket-protocol", &offered)]);
        let admitted = guard(None).check(&mut by_protocol, &lobby, 1_000).unwrap();
        assert_eq!(by_protocol.headers()[SEC_WEBSOCKET_PROTOCOL], "chat");
        assert_eq!(admitted.token_entry.as_deref(), Some(entry.as_str()));
        assert!(!admitted.offered_name);
    }

    #[test]
    fn the_101_prefers_the_objects_choice_then_torpor_then_the_echo() {
        let answered = |admitted: Admitted, chosen: Option<&'static str>| {
            let mut response = Reply::new(Default::default());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            if let Some(chosen) = chosen {
                response
                    .headers_mut()
                    .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(chosen));
            }
            admitted.answer(&mut response);
            response
                .headers()
                .get(SEC_WEBSOCKET_PROTOCOL)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let offered = |name: bool| Admitted {
            token_entry: Some("torpor-token.1.x".into()),
            offered_name: name,
        };
        assert_eq!(
            answered(offered(true), Some("chat")).as_deref(),
            Some("chat")
        );
        assert_eq!(answered(offered(true), None).as_deref(), Some("torpor"));
        assert_eq!(
            answered(offered(false), None).as_deref(),
            Some("torpor-token.1.x")
        );
        assert_eq!(answered(Admitted::default(), None), None);
    }

    #[test]
    fn origins_are_checked_before_tokens() {
        let (lobby, _) = ids();
        let allowed = guard(Some(&["https://a.example"]));
        let mut missing = request("/r/lobby", &[]);
        let refused = allowed.check(&mut missing, &lobby, 0).unwrap_err();
        assert_eq!(refused, Refusal::Forbidden("origin missing"));
        let mut other = request("/r/lobby", &[("origin", "https://b.example")]);
        let refused = allowed.check(&mut other, &lobby, 0).unwrap_err();
        assert_eq!(refused.reply().status(), StatusCode::FORBIDDEN);
        let mut listed = request("/r/lobby", &[("origin", "HTTPS://A.example")]);
        let refused = allowed.check(&mut listed, &lobby, 0).unwrap_err().reply();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(refused.headers()[hyper::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
    }
}
