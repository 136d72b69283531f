//! Configuration: flags, plus `/etc/skiff/config.yaml` (or `--config FILE`) whose keys are
//! the flag names without dashes, exactly as k3s does it.
//!
//! Invariant: the config file is turned into command-line arguments placed before the real
//! ones, so a flag on the command line always wins over the file and both go through the
//! same clap validation (an unknown key is an error, not silently ignored).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/skiff/config.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Finds `--config FILE` / `--config=FILE` in the raw arguments.
fn explicit_config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        let s = a.to_string_lossy();
        if s == "--config" || s == "-c" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// Returns the process arguments with the config file's settings inserted right after the
/// subcommand name (`skiff server <from file> <from command line>`).
pub fn args_with_config_file(args: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    // Only server and agent read the config file; other commands take flags only.
    let sub_pos = args.iter().position(|a| a == "server" || a == "agent");
    let Some(sub_pos) = sub_pos else {
        return Ok(args);
    };
    let (path, required) = match explicit_config_path(&args) {
        Some(p) => (p, true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    if !required && !path.exists() {
        return Ok(args);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let from_file = config_to_args(&path, &text)?;
    let mut out = args[..=sub_pos].to_vec();
    out.extend(from_file);
    out.extend_from_slice(&args[sub_pos + 1..]);
    Ok(out)
}

/// Converts `key: value` pairs into `--key value` arguments; lists repeat the flag and
/// booleans become a bare flag when true.
pub fn config_to_args(path: &Path, text: &str) -> Result<Vec<OsString>, ConfigError> {
    let err = |message: String| ConfigError::Parse {
        path: path.to_owned(),
        message,
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| err(e.to_string()))?;
    let map = match value {
        serde_json::Value::Object(m) => m,
        serde_json::Value::Null => return Ok(Vec::new()),
        _ => return Err(err("expected a mapping of flag names to values".into())),
    };
    let mut out = Vec::new();
    for (key, value) in map {
        if key == "config" {
            return Err(err("`config` cannot be set inside a config file".into()));
        }
        let flag = format!("--{key}");
        let scalar = |v: &serde_json::Value| -> Result<String, ConfigError> {
            match v {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                serde_json::Value::Bool(b) => Ok(b.to_string()),
                _ => Err(err(format!("{key}: expected a scalar value"))),
            }
        };
        match &value {
            serde_json::Value::Bool(true) => out.push(flag.into()),
            serde_json::Value::Bool(false) | serde_json::Value::Null => {}
            serde_json::Value::Array(items) => {
                for item in items {
                    out.push(flag.clone().into());
                    out.push(scalar(item)?.into());
                }
            }
            other => {
                out.push(flag.into());
                out.push(scalar(other)?.into());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_settings_come_before_command_line_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "https-listen-port: 7443\ntls-san:\n  - a.example\n  - b.example\ndisable-agent: true\n",
        )
        .unwrap();
        let args: Vec<OsString> = [
            "skiff",
            "server",
            "--config",
            path.to_str().unwrap(),
            "--https-listen-port",
            "8443",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let out = args_with_config_file(args).unwrap();
        let out: Vec<String> = out
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&out[..2], &["skiff", "server"]);
        let file_port = out.iter().position(|a| a == "7443").unwrap();
        let cli_port = out.iter().position(|a| a == "8443").unwrap();
        assert!(file_port < cli_port, "command line must win: {out:?}");
        assert_eq!(out.iter().filter(|a| *a == "--tls-san").count(), 2);
        assert!(out.contains(&"--disable-agent".to_string()));
    }

    #[test]
    fn missing_explicit_config_file_is_an_error() {
        let args: Vec<OsString> = ["skiff", "server", "--config", "/nonexistent/x.yaml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(args_with_config_file(args).is_err());
    }
}
