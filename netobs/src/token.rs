//! The API's bearer token: read from a file (a Docker secret), required of
//! every request but `/healthz` when the agent has one, sent by clients.
use std::path::Path;

use subtle::ConstantTimeEq;

/// Shortest token accepted: a guessable one protects nothing.
pub const MIN_LEN: usize = 16;

#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The file's content without surrounding whitespace (a secret written
    /// with `echo` ends in a newline).
    pub fn from_file(path: &Path) -> Result<Token, String> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the API token file {}: {e}", path.display()))?;
        let t = raw.trim();
        if t.len() < MIN_LEN {
            return Err(format!(
                "the API token in {} is {} characters long: use at least {MIN_LEN} (e.g. \
                 `openssl rand -hex 32`)",
                path.display(),
                t.len()
            ));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "the API token in {} contains whitespace: it must be one word",
                path.display()
            ));
        }
        Ok(Token(t.to_owned()))
    }

    /// The `Authorization` header's value.
    pub fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether an `Authorization` header carries this token, compared in
    /// constant time (the length aside).
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(h) = header else {
            return false;
        };
        let Some(given) = h.strip_prefix(b"Bearer ") else {
            return false;
        };
        given.ct_eq(self.0.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let t = Token("0123456789abcdef0123".to_owned());
        assert!(t.accepts(Some(b"Bearer 0123456789abcdef0123")));
        assert!(!t.accepts(Some(b"Bearer 0123456789abcdef012")));
        assert!(!t.accepts(Some(b"Bearer 0123456789abcdef01234")));
        assert!(!t.accepts(Some(b"Basic 0123456789abcdef0123")));
        assert!(!t.accepts(Some(b"0123456789abcdef0123")));
        assert!(!t.accepts(None));
        assert_eq!(format!("{t:?}"), "Token(..)", "never printed");
    }

    #[test]
    fn short_or_spaced_tokens_are_refused_in_one_line() {
        let dir = std::env::temp_dir().join(format!("netobs-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let write = |name: &str, content: &str| {
            let p = dir.join(name);
            std::fs::write(&p, content).expect("token file");
            p
        };
        let ok = Token::from_file(&write("ok", "0123456789abcdef0123\n")).expect("a good token");
        assert!(ok.accepts(Some(b"Bearer 0123456789abcdef0123")));
        let short = Token::from_file(&write("short", "abc\n")).expect_err("too short");
        assert!(
            short.contains("3 characters long: use at least 16"),
            "{short}"
        );
        let spaced =
            Token::from_file(&write("spaced", "0123456789 abcdef0123")).expect_err("spaced");
        assert!(spaced.contains("whitespace"), "{spaced}");
        let missing = Token::from_file(&dir.join("missing")).expect_err("missing");
        assert!(
            missing.starts_with("cannot read the API token file"),
            "{missing}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
