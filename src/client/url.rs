//! WebSocket URIs (RFC 6455 §3), parsed by hand: `ws://host[:port][/path][?query]` and
//! the same with `wss://`.
//!
//! §3: "ws-URI = "ws:" "//" host [ ":" port ] path [ "?" query ]", "wss-URI = "wss:" "//"
//! host [ ":" port ] path [ "?" query ]" and "The port component is OPTIONAL; the default
//! for "ws" is port 80, while the default for "wss" is port 443."

use std::fmt;

/// §3: the default port of the "ws" scheme.
pub const DEFAULT_PORT: u16 = 80;
/// §3: the default port of the "wss" scheme.
pub const DEFAULT_SECURE_PORT: u16 = 443;

/// A parsed `ws://` or `wss://` URI: where to connect, whether over TLS, and what to ask
/// for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// §3: "The URI is called "secure" (and it is said that "the secure flag is set") if
    /// the scheme component matches "wss" case-insensitively": the connection is made
    /// over TLS.
    pub secure: bool,
    /// The host as written in the URI: a name, an IPv4 address, or an IPv6 address in
    /// brackets (`[::1]`).
    pub host: String,
    /// The port: the URI's, or the scheme's default ([`DEFAULT_PORT`],
    /// [`DEFAULT_SECURE_PORT`]).
    pub port: u16,
    /// §4.1's "/resource name/": the path (at least `/`) and the query, if any.
    pub resource: String,
}

/// Why a string is not a WebSocket URI this client can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Another scheme, or none; carries what came before `://` (maybe empty).
    Scheme(String),
    /// Nothing between `ws://` and the path.
    MissingHost,
    /// `user@host`: §3's ws-URI has no user information.
    UserInfo,
    /// A port that is not a number from 1 to 65535; carries it.
    BadPort(String),
    /// An IPv6 address without its closing `]`.
    UnclosedBracket,
    /// §3: "Fragment identifiers ... MUST NOT be used on these URIs".
    Fragment,
    /// A space, control character or non-ASCII character, which would break the request
    /// line; percent-encode it.
    BadCharacter(char),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme(scheme) if scheme.is_empty() => {
                f.write_str("expected a URL like ws://127.0.0.1:8080/ws")
            }
            UrlError::Scheme(scheme) => {
                write!(
                    f,
                    "unsupported scheme {scheme:?}; expected ws:// or wss://HOST[:PORT][/PATH]"
                )
            }
            UrlError::MissingHost => f.write_str("no host in the URL"),
            UrlError::UserInfo => f.write_str("user@host is not allowed in a WebSocket URL"),
            UrlError::BadPort(port) => write!(f, "bad port {port:?}; expected 1-65535"),
            UrlError::UnclosedBracket => f.write_str("an IPv6 address needs its closing ']'"),
            UrlError::Fragment => f.write_str(
                "a WebSocket URL may not have a #fragment (RFC 6455 §3); write # as %23",
            ),
            UrlError::BadCharacter(c) => {
                write!(f, "{c:?} is not allowed in a URL; percent-encode it")
            }
        }
    }
}

impl std::error::Error for UrlError {}

impl WsUrl {
    /// Parses `ws://host[:port][/path][?query]` or `wss://...`; the scheme is
    /// case-insensitive.
    pub fn parse(text: &str) -> Result<WsUrl, UrlError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(UrlError::Scheme(String::new()));
        };
        let secure = if scheme.eq_ignore_ascii_case("wss") {
            true
        } else if scheme.eq_ignore_ascii_case("ws") {
            false
        } else {
            return Err(UrlError::Scheme(scheme.to_owned()));
        };
        if let Some(c) = rest
            .chars()
            .find(|c| !c.is_ascii() || c.is_ascii_control() || *c == ' ')
        {
            return Err(UrlError::BadCharacter(c));
        }
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() || host == "[]" {
            return Err(UrlError::MissingHost);
        }
        let port = match port {
            None if secure => DEFAULT_SECURE_PORT,
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(UrlError::BadPort(p.to_owned())),
            },
        };
        // §4.1: "/resource name/ ... "/" if the path component is empty".
        let resource = if resource.starts_with('/') {
            resource.to_owned()
        } else {
            format!("/{resource}")
        };
        Ok(WsUrl {
            secure,
            host: host.to_owned(),
            port,
            resource,
        })
    }

    /// The scheme, in lower case: `ws` or `wss`.
    pub fn scheme(&self) -> &'static str {
        if self.secure {
            "wss"
        } else {
            "ws"
        }
    }

    /// The scheme's default port (§3).
    pub fn default_port(&self) -> u16 {
        if self.secure {
            DEFAULT_SECURE_PORT
        } else {
            DEFAULT_PORT
        }
    }

    /// The `Host` header value. §4.1: "the /host/ ... followed by ":" and the port
    /// number if not using the default port" (80 for ws, 443 for wss).
    pub fn host_header(&self) -> String {
        if self.port == self.default_port() {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The value of the query parameter `name` (the last one, if repeated), as written:
    /// not percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        let (_, query) = self.resource.split_once('?')?;
        query
            .rsplit('&')
            .find_map(|param| match param.split_once('=') {
                Some((key, value)) => (key == name).then_some(value),
                None => (param == name).then_some(""),
            })
    }

    /// This URL with `since=<id>` in its query, for resuming after the message `id`: any
    /// `since` already there is replaced, every other parameter kept in order. The id is
    /// percent-encoded (RFC 3986 §2.1) except for §2.3's unreserved characters, which
    /// are all a wscast id uses.
    pub fn with_since(&self, id: &str) -> WsUrl {
        let (path, query) = self
            .resource
            .split_once('?')
            .unwrap_or((&self.resource, ""));
        let mut params: Vec<String> = query
            .split('&')
            .filter(|param| !param.is_empty())
            .filter(|param| param.split('=').next() != Some("since"))
            .map(str::to_owned)
            .collect();
        params.push(format!("since={}", percent_encode(id)));
        WsUrl {
            resource: format!("{path}?{}", params.join("&")),
            ..self.clone()
        }
    }

    /// The host to resolve, without an IPv6 address's brackets; over TLS, also the name
    /// (or address) the server's certificate must be valid for.
    pub fn connect_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme();
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.resource)
    }
}

/// RFC 3986 §2.1 percent-encoding of every byte but §2.3's "unreserved characters":
/// `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Splits `host[:port]` or `[v6]` / `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), UrlError> {
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or(UrlError::UnclosedBracket)?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err(UrlError::BadPort(rest.to_owned())),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, resource: &str) -> WsUrl {
        WsUrl {
            secure: false,
            host: host.into(),
            port,
            resource: resource.into(),
        }
    }

    fn secure(host: &str, port: u16, resource: &str) -> WsUrl {
        WsUrl {
            secure: true,
            ..url(host, port, resource)
        }
    }

    #[test]
    fn section_3_uris() {
        let table: &[(&str, Result<WsUrl, UrlError>)] = &[
            ("ws://127.0.0.1:8080/ws", Ok(url("127.0.0.1", 8080, "/ws"))),
            ("ws://example.com", Ok(url("example.com", 80, "/"))),
            ("WS://Example.com/", Ok(url("Example.com", 80, "/"))),
            ("ws://h:9/a/b?x=1&y", Ok(url("h", 9, "/a/b?x=1&y"))),
            ("ws://h?x=1", Ok(url("h", 80, "/?x=1"))),
            ("ws://[::1]:8080/ws", Ok(url("[::1]", 8080, "/ws"))),
            ("ws://[::1]/ws", Ok(url("[::1]", 80, "/ws"))),
            // §3: "the default for "wss" is port 443".
            ("wss://example.com/", Ok(secure("example.com", 443, "/"))),
            ("WSS://h:8443/ws?x", Ok(secure("h", 8443, "/ws?x"))),
            ("wss://127.0.0.1", Ok(secure("127.0.0.1", 443, "/"))),
            ("wss://[::1]:80/ws", Ok(secure("[::1]", 80, "/ws"))),
            ("wss:///ws", Err(UrlError::MissingHost)),
            ("wss://h/a#top", Err(UrlError::Fragment)),
            ("https://h/", Err(UrlError::Scheme("https".into()))),
            ("http://h/", Err(UrlError::Scheme("http".into()))),
            ("127.0.0.1:8080", Err(UrlError::Scheme(String::new()))),
            ("ws:///ws", Err(UrlError::MissingHost)),
            ("ws://:80/ws", Err(UrlError::MissingHost)),
            ("ws://u:p@h/", Err(UrlError::UserInfo)),
            ("ws://h:0/", Err(UrlError::BadPort("0".into()))),
            ("ws://h:65536/", Err(UrlError::BadPort("65536".into()))),
            ("ws://h:+80/", Err(UrlError::BadPort("+80".into()))),
            ("ws://h:/", Err(UrlError::BadPort(String::new()))),
            ("ws://[::1/", Err(UrlError::UnclosedBracket)),
            ("ws://[::1]x/", Err(UrlError::BadPort("x".into()))),
            ("ws://h/a#top", Err(UrlError::Fragment)),
            ("ws://h/a b", Err(UrlError::BadCharacter(' '))),
            ("ws://h/é", Err(UrlError::BadCharacter('é'))),
        ];
        for (text, want) in table {
            assert_eq!(&WsUrl::parse(text), want, "{text}");
        }
    }

    #[test]
    fn host_header_names_the_port_unless_it_is_the_schemes_default() {
        let table = [
            ("ws://h/", "h", "h"),
            ("ws://h:80/", "h", "h"),
            ("ws://h:8080/", "h:8080", "h"),
            ("ws://h:443/", "h:443", "h"),
            ("ws://[::1]:8080/", "[::1]:8080", "::1"),
            ("wss://h/", "h", "h"),
            ("wss://h:443/", "h", "h"),
            ("wss://h:80/", "h:80", "h"),
            ("wss://[::1]:8443/", "[::1]:8443", "::1"),
        ];
        for (text, header, connect) in table {
            let url = WsUrl::parse(text).unwrap();
            assert_eq!(url.host_header(), header, "{text}");
            assert_eq!(url.connect_host(), connect, "{text}");
        }
    }

    #[test]
    fn since_joins_the_query_and_replaces_an_earlier_since() {
        let table = [
            ("ws://h/ws", "19ae0c5f2a1-41", "/ws?since=19ae0c5f2a1-41"),
            ("ws://h", "7-1", "/?since=7-1"),
            ("ws://h/ws?", "7-1", "/ws?since=7-1"),
            ("ws://h/ws?room=a&x", "7-1", "/ws?room=a&x&since=7-1"),
            ("ws://h/ws?since=7-1&room=a", "7-2", "/ws?room=a&since=7-2"),
            (
                "ws://h/ws?since&sincere=1",
                "7-2",
                "/ws?sincere=1&since=7-2",
            ),
            // Redis stream ids and anything else are percent-encoded (RFC 3986 §2.1).
            ("ws://h/ws", "1-0 a/b&c=d", "/ws?since=1-0%20a%2Fb%26c%3Dd"),
        ];
        for (text, id, resource) in table {
            let url = WsUrl::parse(text).unwrap().with_since(id);
            assert_eq!(url.resource, resource, "{text} + {id}");
            assert_eq!(url.host, "h");
        }
    }

    #[test]
    fn display_names_the_scheme_and_port() {
        let table = [
            ("ws://h/ws", "ws://h:80/ws"),
            ("WSS://h/ws", "wss://h:443/ws"),
            ("wss://[::1]:8443", "wss://[::1]:8443/"),
        ];
        for (text, shown) in table {
            let url = WsUrl::parse(text).unwrap();
            assert_eq!(url.to_string(), shown, "{text}");
            assert_eq!(WsUrl::parse(shown), Ok(url), "{shown}");
        }
        let resumed = WsUrl::parse("wss://h/ws").unwrap().with_since("7-1");
        assert!(resumed.secure);
        assert_eq!(resumed.to_string(), "wss://h:443/ws?since=7-1");
    }

    #[test]
    fn query_params_are_found_by_name() {
        let url = WsUrl::parse("ws://h/ws?a=1&since=7-1&b&since=7-2").unwrap();
        assert_eq!(url.query_param("since"), Some("7-2"));
        assert_eq!(url.query_param("a"), Some("1"));
        assert_eq!(url.query_param("b"), Some(""));
        assert_eq!(url.query_param("c"), None);
        assert_eq!(
            WsUrl::parse("ws://h/ws").unwrap().query_param("since"),
            None
        );
    }
}
