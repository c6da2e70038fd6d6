//! Configuration errors: each names the file, the line and column, and says
//! in plain words what is wrong and what would be right.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column; `None` for problems with the file as a whole.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl ConfigError {
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_owned(),
            position: None,
            message: message.into(),
        }
    }

    /// An error at byte offset `offset` of `source`.
    pub fn at(file: &Path, source: &str, offset: usize, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_owned(),
            position: Some(line_col(source, offset)),
            message: message.into(),
        }
    }
}

/// How bad a problem `cascade check` prints is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The configuration does not load.
    Error,
    /// It loads, but something is likely a mistake (`--strict` refuses it).
    Warning,
}

impl ConfigError {
    /// The line `cascade check` prints, errors and warnings in one shape:
    /// `file:line:col: error: …`, or `file: warning: …` for a problem with
    /// a file as a whole, as compilers print theirs.
    pub fn line(&self, severity: Severity) -> String {
        let level = match severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.position {
            Some((line, col)) => format!(
                "{}:{line}:{col}: {level}: {}",
                self.file.display(),
                self.message
            ),
            None => format!("{}: {level}: {}", self.file.display(), self.message),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a configuration set; never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_warnings_print_alike() {
        let src = "a = 1\nb = 2\n";
        let at = ConfigError::at(Path::new("cascade.toml"), src, 6, "bad b");
        assert_eq!(at.line(Severity::Error), "cascade.toml:2:1: error: bad b");
        assert_eq!(
            at.line(Severity::Warning),
            "cascade.toml:2:1: warning: bad b"
        );
        let whole = ConfigError::whole_file(Path::new("channels/vk.toml"), "odd");
        assert_eq!(
            whole.line(Severity::Warning),
            "channels/vk.toml: warning: odd"
        );
    }

    #[test]
    fn positions() {
        let src = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 10), (2, 4)); // é is one character, two bytes
    }
}
