//! `--config FILE`: the daemon's settings as TOML, one key per flag (its
//! long name, with dashes or underscores):
//!
//! ```toml
//! peers = ["192.0.2.2", "192.0.2.3"]
//! nickname = "host1"
//! password-file = "/etc/weave/password"
//! ipalloc-range = "10.32.0.0/12"
//! no-fastdp = false
//! ```
//!
//! Flags on the command line win over the environment, which wins over the
//! file, which wins over the defaults. An unknown key, or a value of the
//! wrong kind, is refused with the file and the key named.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command, CommandFactory, FromArgMatches};

use super::config::{Args, ConfigError};

fn invalid(reason: String) -> ConfigError {
    ConfigError::Invalid { setting: "config", reason }
}

/// Why the command line and file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// The command line itself (also `--help` and `--version`, which clap
    /// prints and exits on).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// The file, or a value it gives.
    #[error(transparent)]
    File(#[from] ConfigError),
}

/// Parses `argv` (program name first), with the file `--config` names, if
/// any, under it.
pub fn parse(argv: Vec<OsString>) -> Result<Args, ArgsError> {
    let cmd = Args::command();
    let m = cmd.clone().try_get_matches_from(argv.clone())?;
    let Some(path) = m.get_one::<std::path::PathBuf>("config").cloned() else {
        return Ok(Args::from_arg_matches(&m)?);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let extra = file_args(&cmd, &m, &text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    let mut all = Vec::with_capacity(argv.len() + extra.len());
    let mut it = argv.into_iter();
    all.extend(it.next());
    all.extend(extra.into_iter().map(OsString::from));
    all.extend(it);
    let m = cmd.try_get_matches_from(all).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    Ok(Args::from_arg_matches(&m)?)
}

/// The command-line arguments that say what the file says, for the
/// settings neither the command line nor the environment gave.
pub fn file_args(cmd: &Command, given: &ArgMatches, text: &str) -> Result<Vec<String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
    let mut named = Vec::new();
    let mut positional = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) || (a.is_positional() && a.get_id() == key.as_str()))
            .filter(|a| a.get_id() != "config")
            .ok_or_else(|| format!("unknown setting {key:?}"))?;
        let id = arg.get_id().as_str();
        if matches!(given.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue;
        }
        let values: Vec<String> = match value {
            toml::Value::Array(a) => a.iter().map(|v| scalar(key, v)).collect::<Result<_, _>>()?,
            v => vec![scalar(key, v)?],
        };
        if arg.is_positional() {
            positional.extend(values);
        } else if !arg.get_action().takes_values() {
            // A switch: true sets it, false leaves it off.
            match value {
                toml::Value::Boolean(true) => named.push(format!("--{long}")),
                toml::Value::Boolean(false) => {}
                _ => return Err(format!("{key:?} is a switch: give true or false")),
            }
        } else {
            named.extend(values.into_iter().map(|v| format!("--{long}={v}")));
        }
    }
    named.extend(positional);
    Ok(named)
}

fn scalar(key: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!("{key:?}: expected a string, a number, a boolean or a list of them")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str, cli: &[&str]) -> Result<Args, String> {
        let dir = std::env::temp_dir().join(format!("weaver-config-{}-{}", std::process::id(), cli.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(format!("{}.toml", text.len()));
        std::fs::write(&f, text).unwrap();
        let mut argv: Vec<OsString> = vec!["weaver".into(), "--config".into(), f.clone().into()];
        argv.extend(cli.iter().map(OsString::from));
        let _held = crate::daemon::config::tests::ENV_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = parse(argv).map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&f);
        r
    }

    #[test]
    fn the_file_fills_what_flags_do_not_give() {
        let a = with_file(
            "peers = [\"10.0.0.2\", \"10.0.0.3\"]\nnickname = \"fromfile\"\nport = 7000\nno_fastdp = true\n\
             ipalloc-range = \"10.2.0.0/16\"\nsleeve-peer = [\"a\", \"b\"]\ndiscovery = false\n",
            &["--nickname", "fromflag"],
        )
        .unwrap();
        assert_eq!(a.peers, vec!["10.0.0.2", "10.0.0.3"]);
        assert_eq!(a.nickname.as_deref(), Some("fromflag"), "the command line wins");
        assert_eq!(a.port, 7000);
        assert!(a.no_fastdp);
        assert!(!a.discovery);
        assert_eq!(a.ipalloc_range, "10.2.0.0/16");
        assert_eq!(a.sleeve_peer, vec!["a", "b"]);
        // Peers on the command line replace the file's.
        let a = with_file("peers = [\"10.0.0.2\"]\n", &["10.9.9.9"]).unwrap();
        assert_eq!(a.peers, vec!["10.9.9.9"]);
    }

    #[test]
    fn bad_files_name_the_file_and_the_key() {
        for (text, needle) in [
            ("colour = \"blue\"\n", "unknown setting \"colour\""),
            ("port = [[1]]\n", "\"port\""),
            ("no-fastdp = \"yes\"\n", "switch"),
            ("port = \n", ".toml"),
            ("port = 70000\n", "--port"),
            ("config = \"x\"\n", "unknown setting"),
        ] {
            let e = with_file(text, &[]).unwrap_err();
            assert!(e.contains(needle) && e.contains("--config"), "{text:?}: {e}");
        }
        let e = parse(vec!["weaver".into(), "--config".into(), "/nonexistent/w.toml".into()]).unwrap_err().to_string();
        assert!(e.contains("cannot read /nonexistent/w.toml"), "{e}");
    }
}
