//! Connection strings with libpq's TLS parameters: `sslmode` (all five of
//! libpq's values, where tokio-postgres parses only three) and `sslrootcert` are
//! taken out before the rest is handed to `tokio_postgres::Config`.

use crate::Error;

/// The TLS parameters found in a connection string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SslParams {
    /// `sslmode`, as written.
    pub(crate) mode: Option<String>,
    /// `sslrootcert`, as written (a path, or `system`).
    pub(crate) root_cert: Option<String>,
}

const TLS_KEYS: [&str; 2] = ["sslmode", "sslrootcert"];

/// Parses a URL (`postgres://…?sslmode=verify-full&sslrootcert=ca.pem`) or a
/// key=value string (`host=db sslmode=verify-full`) into a driver configuration
/// and the TLS parameters.
pub(crate) fn parse(conninfo: &str) -> Result<(tokio_postgres::Config, SslParams), Error> {
    let (rest, params) = split(conninfo)?;
    let config = rest
        .parse()
        .map_err(|e| Error::invalid_argument(format!("invalid connection string: {e}")))?;
    Ok((config, params))
}

/// The connection string without its TLS parameters, and those parameters.
pub(crate) fn split(conninfo: &str) -> Result<(String, SslParams), Error> {
    let trimmed = conninfo.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        split_url(trimmed)
    } else {
        split_key_values(trimmed)
    }
}

fn keep(params: &mut SslParams, key: &str, value: String) {
    match key {
        "sslmode" => params.mode = Some(value),
        _ => params.root_cert = Some(value),
    }
}

fn split_url(url: &str) -> Result<(String, SslParams), Error> {
    let mut params = SslParams::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), params));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key_text = percent_decode(key)?;
        if TLS_KEYS.contains(&key_text.as_str()) {
            keep(&mut params, &key_text, percent_decode(value)?);
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, params))
}

fn percent_decode(text: &str) -> Result<String, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::invalid_argument(format!("invalid percent-encoding in {text:?}"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::invalid_argument(format!("{text:?} does not decode to UTF-8")))
}

/// libpq's `key = value` syntax: values may be single-quoted, `\` escapes.
fn split_key_values(text: &str) -> Result<(String, SslParams), Error> {
    let mut params = SslParams::default();
    let mut kept = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(Error::invalid_argument(format!(
                "invalid connection string: {key:?} is not followed by `=`"
            )));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(Error::invalid_argument(
                            "invalid connection string: unterminated quoted value",
                        ))
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            keep(&mut params, &key, value);
        } else {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{escaped}'"));
        }
    }
    Ok((kept.join(" "), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (rest, p) = split(
            "postgres://u:p@db:5433/app?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5433/app?application_name=x");
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (rest, p) = split("postgresql://db/app?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://db/app");
        assert_eq!(p.mode.as_deref(), Some("require"));
        assert_eq!(split("postgres://db").unwrap().1, SslParams::default());
        assert!(split("postgres://db?sslrootcert=%zz").is_err());
    }

    #[test]
    fn key_values() {
        let (rest, p) =
            split("host=db  user = 'o\\'brien' sslmode=verify-ca sslrootcert='/a b/ca.pem'")
                .unwrap();
        assert_eq!(rest, "host='db' user='o\\'brien'");
        assert_eq!(p.mode.as_deref(), Some("verify-ca"));
        assert_eq!(p.root_cert.as_deref(), Some("/a b/ca.pem"));
        let (config, _) = parse(&rest).unwrap();
        assert_eq!(config.get_user(), Some("o'brien"));
        assert!(split("host").is_err());
        assert!(split("host='db").is_err());
    }
}
