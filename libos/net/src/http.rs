//! The HTTP/1.1 that `httpd` speaks, as pure functions: reading a request head, choosing a
//! content type, writing a response head. Tested on the host.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Most bytes a request head (request line and headers) may have.
pub const MAX_HEAD: usize = 2048;

/// A request head that parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET` or `HEAD` (anything else is refused with 405 before this).
    pub head_only: bool,
    /// The path, without a query string, its `%XX` escapes decoded.
    pub path: Cow<'a, str>,
    pub keep_alive: bool,
}

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// No whole head yet (and still within [`MAX_HEAD`]).
    Incomplete,
    /// A request, and the bytes its head took.
    Request(Request<'a>, usize),
    /// An error to answer with (then close): 400, 405, 431 or 505.
    Error(u16),
}

/// Reads one request head from the start of `buf`.
pub fn parse(buf: &[u8]) -> Parse<'_> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_HEAD { Parse::Error(431) } else { Parse::Incomplete };
    };
    if end + 4 > MAX_HEAD {
        return Parse::Error(431);
    }
    let Ok(head) = core::str::from_utf8(&buf[..end]) else { return Parse::Error(400) };
    let mut lines = head.split("\r\n");
    let mut words = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Parse::Error(400);
    };
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Parse::Error(505),
        _ => return Parse::Error(400),
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { return Parse::Error(400) };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        } else if (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Parse::Error(400); // no request carries a body here
        }
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => return Parse::Error(405),
        _ => return Parse::Error(400),
    };
    let raw = target.split('?').next().unwrap_or("");
    let Some(path) = decode(raw).filter(|_| raw.starts_with('/')) else { return Parse::Error(400) };
    if path.split('/').any(|s| s == "..") {
        return Parse::Error(400);
    }
    Parse::Request(Request { head_only, path, keep_alive }, end + 4)
}

/// `path` with its `%XX` escapes decoded (a browser asks for `my%20notes.txt`); `None` if
/// an escape is malformed, or decodes to NUL or to bytes that are not UTF-8.
pub fn decode(path: &str) -> Option<Cow<'_, str>> {
    if !path.contains('%') {
        return Some(Cow::Borrowed(path));
    }
    let mut out = Vec::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = |c: Option<u8>| char::from(c?).to_digit(16);
        let v = hex(bytes.next())? * 16 + hex(bytes.next())?;
        out.push(u8::try_from(v).ok().filter(|&v| v != 0)?);
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// `path` as a link's target: bytes other than letters, digits, `/` and `-._~` as `%XX`.
pub fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

/// `text` safe inside HTML text and in a double-quoted attribute.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['<', '>', '&', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '&' => out += "&amp;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The content type of a file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "txt" | "cfg" | "md" | "rs" | "toml" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A response head.
pub fn head(status: u16, content_type: &str, length: u64, keep_alive: bool) -> String {
    let allow = if status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let conn = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 {status} {}\r\nServer: exo-httpd\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n{allow}Connection: {conn}\r\n\r\n",
        reason(status)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_parses_with_keep_alive_by_default() {
        let r = b"GET /fat/config.txt?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\nGET / HTTP/1.1";
        let Parse::Request(req, used) = parse(r) else { panic!() };
        assert_eq!(req, Request { head_only: false, path: "/fat/config.txt".into(), keep_alive: true });
        assert_eq!(&r[used..], b"GET / HTTP/1.1", "a pipelined request stays for later");
        let Parse::Request(req, _) = parse(b"HEAD / HTTP/1.0\r\n\r\n") else { panic!() };
        assert!(req.head_only && !req.keep_alive);
        let Parse::Request(req, _) = parse(b"GET / HTTP/1.1\r\nconnection: Close\r\n\r\n") else { panic!() };
        assert!(!req.keep_alive);
    }

    #[test]
    fn incomplete_heads_wait_and_oversized_ones_are_refused() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parse::Incomplete);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&big), Parse::Error(431));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&big), Parse::Error(431));
    }

    #[test]
    fn malformed_requests_get_the_right_error() {
        for (req, status) in [
            (&b"GARBAGE\r\n\r\n"[..], 400),
            (b"GET /\r\n\r\n", 400),
            (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
            (b"POST /fat/x HTTP/1.1\r\n\r\n", 405),
            (b"DELETE / HTTP/1.1\r\n\r\n", 405),
            (b"get / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET / FTP/1.0\r\n\r\n", 400),
            (b"GET fat HTTP/1.1\r\n\r\n", 400),
            (b"GET /fat/../etc HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 400),
            (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
            // Escapes: `..` spelled in them, malformed ones, NUL, bytes that are not UTF-8.
            (b"GET /fat/%2e%2E/x HTTP/1.1\r\n\r\n", 400),
            (b"GET /fat/%2E. HTTP/1.1\r\n\r\n", 400),
            (b"GET /fat/a%2 HTTP/1.1\r\n\r\n", 400),
            (b"GET /fat/a%zz HTTP/1.1\r\n\r\n", 400),
            (b"GET /fat/a%00 HTTP/1.1\r\n\r\n", 400),
            (b"GET /fat/%ff HTTP/1.1\r\n\r\n", 400),
            (b"GET %2Ffat HTTP/1.1\r\n\r\n", 400),
        ] {
            assert_eq!(parse(req), Parse::Error(status), "{:?}", core::str::from_utf8(req));
        }
    }

    #[test]
    fn escapes_decode_and_names_encode_back() {
        let Parse::Request(req, _) = parse(b"GET /fat/my%20notes%2etxt?q=%zz HTTP/1.1\r\n\r\n") else {
            panic!()
        };
        assert_eq!(req.path, "/fat/my notes.txt");
        assert_eq!(decode("/fat/%C3%A9t%C3%A9").as_deref(), Some("/fat/été"));
        for name in ["/fat/my notes.txt", "/log/été/a&b?c#d%e", "/plain/Name-1.2_~x"] {
            assert_eq!(decode(&encode(name)).as_deref(), Some(name));
        }
        assert_eq!(encode("/log/a b?#%"), "/log/a%20b%3F%23%25");
        assert_eq!(escape("<b>\"x\" & 'y'</b>"), "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;");
        assert!(matches!(escape("plain.txt"), Cow::Borrowed(_)));
    }

    #[test]
    fn heads_carry_length_type_and_connection() {
        let h = head(200, content_type("/fat/CONFIG.TXT"), 952, true);
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(h.contains("Content-Length: 952\r\n") && h.contains("Content-Type: text/plain"));
        assert!(h.contains("Connection: keep-alive\r\n") && h.ends_with("\r\n\r\n"));
        assert!(head(405, "text/plain", 0, false).contains("Allow: GET, HEAD\r\n"));
        assert_eq!(content_type("/fat/kernel8.img"), "application/octet-stream");
    }
}
