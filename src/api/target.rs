//! What an attach or detach TARGET names: a network namespace (`ip netns`
//! name), a PID, a path such as `/proc/PID/ns/net`, or a Docker container
//! (resolved to its process's namespace through `docker inspect`, when the
//! Docker CLI is installed; no engine is needed to test this).

use std::path::Path;
use std::time::Duration;

use super::AttachError;

/// A target, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// What to attach: a namespace name, a PID, or a path.
    pub target: String,
    /// The container's name, for DNS, when the target was a Docker name.
    pub name: Option<String>,
}

/// How long `docker inspect` may take.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves `target`; an error names it and what was looked for.
/// A target that names nothing is [`AttachError::NotFound`].
pub async fn resolve(target: &str) -> Result<Resolved, AttachError> {
    use AttachError::{Failed, Invalid, NotFound};
    let t = target.trim();
    if t.is_empty() {
        return Err(Invalid(
            "no target: give a namespace name, a PID, a /proc/PID/ns/net path or a Docker container".into(),
        ));
    }
    let plain = Resolved { target: t.to_string(), name: None };
    if t.contains('/') || t.parse::<u32>().is_ok() || Path::new("/run/netns").join(t).exists() {
        return Ok(plain);
    }
    let inspect = tokio::process::Command::new("docker")
        .args(["inspect", "--format", "{{.State.Pid}}", t])
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(DOCKER_TIMEOUT, inspect).await {
        Err(_) => return Err(Failed(format!("no network namespace named {t:?}, and `docker inspect {t}` timed out"))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NotFound(format!(
                "no network namespace named {t:?} (see `ip netns list`), and no Docker CLI to look for a container"
            )))
        }
        Ok(Err(e)) => {
            return Err(Failed(format!("no network namespace named {t:?}, and `docker inspect` failed: {e}")))
        }
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(NotFound(format!("no network namespace or Docker container named {t:?} ({why})")));
    }
    pid_of(&String::from_utf8_lossy(&out.stdout))
        .map(|pid| Resolved {
            target: format!("/proc/{pid}/ns/net"),
            name: Some(t.trim_start_matches('/').to_string()),
        })
        .ok_or_else(|| NotFound(format!("Docker container {t:?} is not running")))
}

/// The PID `docker inspect --format {{.State.Pid}}` printed; 0 (stopped)
/// or garbage is none.
fn pid_of(out: &str) -> Option<u32> {
    out.trim().parse::<u32>().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_pids() {
        assert_eq!(pid_of("1234\n"), Some(1234));
        assert_eq!(pid_of("0\n"), None);
        assert_eq!(pid_of("<no value>"), None);
        assert_eq!(pid_of(""), None);
    }

    #[tokio::test]
    async fn plain_targets_stay_as_given() {
        assert_eq!(resolve("1234").await.unwrap().target, "1234");
        assert_eq!(resolve("/proc/1/ns/net").await.unwrap().target, "/proc/1/ns/net");
        assert!(resolve(" ").await.is_err());
    }
}
