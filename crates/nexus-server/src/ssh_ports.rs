//! SSH ports: each workspace holds one port of the operator's range, where the server listens and
//! forwards to the workspace's sshd. Which port a new workspace gets, binding it, and the one
//! listener task per port.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use nexus_types::diagnostics::lock;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use crate::error::{Result, ServerError};

/// The range, the address listeners bind to, and the listeners running.
pub(crate) struct SshPorts {
    range: (u16, u16),
    ip: IpAddr,
    /// Held from choosing a port until the workspace holding it is recorded (see [`SshPorts::reserve`]).
    choosing: tokio::sync::Mutex<()>,
    listeners: Mutex<HashMap<u16, AbortHandle>>,
}

/// The ports of `range` no workspace holds, lowest first.
fn candidates((lo, hi): (u16, u16), used: &HashSet<u16>) -> impl Iterator<Item = u16> + '_ {
    (lo..=hi).filter(move |p| !used.contains(p))
}

impl SshPorts {
    /// Ports `range` (inclusive) on `ip`.
    pub(crate) fn new(range: (u16, u16), ip: IpAddr) -> Self {
        SshPorts { range, ip, choosing: tokio::sync::Mutex::new(()), listeners: Mutex::new(HashMap::new()) }
    }

    /// Serializes port choice + bind + recording the workspace: two creates that both read the
    /// used ports before either recorded its own would otherwise pick the same one.
    pub(crate) async fn reserve(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.choosing.lock().await
    }

    /// Binds the lowest port of the range that no workspace holds (`used`) and no other program has
    /// bound. Call under [`SshPorts::reserve`].
    pub(crate) async fn bind_free(&self, used: &HashSet<u16>) -> Result<(u16, TcpListener)> {
        for port in candidates(self.range, used) {
            if let Ok(listener) = TcpListener::bind(SocketAddr::new(self.ip, port)).await {
                return Ok((port, listener));
            }
        }
        let (lo, hi) = self.range;
        Err(ServerError::unavailable(
            "ssh_ports_exhausted",
            format!("all {} SSH ports ({lo}-{hi}) are in use", u32::from(hi - lo) + 1),
            "delete a workspace you no longer need (`nexus workspace delete <name>`), or ask the operator to widen `--ssh-port-range`",
        ))
    }

    /// Binds `port` again for the workspace that holds it; `None` when it is served already.
    /// Call under [`SshPorts::reserve`].
    pub(crate) async fn bind(&self, port: u16) -> std::io::Result<Option<TcpListener>> {
        if lock(&self.listeners).contains_key(&port) {
            return Ok(None);
        }
        TcpListener::bind(SocketAddr::new(self.ip, port)).await.map(Some)
    }

    /// Records the task serving `port`, stopping one that served it before.
    pub(crate) fn serving(&self, port: u16, task: AbortHandle) {
        if let Some(old) = lock(&self.listeners).insert(port, task) {
            old.abort();
        }
    }

    /// Whether the server listens on `port`.
    #[cfg(test)]
    pub(crate) fn is_serving(&self, port: u16) -> bool {
        lock(&self.listeners).contains_key(&port)
    }

    /// Stops listening on `port`, so SSH clients are refused outright ("connection refused") rather
    /// than accepted and dropped.
    pub(crate) fn close(&self, port: u16) {
        if let Some(task) = lock(&self.listeners).remove(&port) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(range: (u16, u16)) -> SshPorts {
        SshPorts::new(range, "127.0.0.1".parse().unwrap())
    }

    #[test]
    fn candidates_skip_held_ports_lowest_first() {
        let used = HashSet::from([10, 12]);
        assert_eq!(candidates((10, 14), &used).collect::<Vec<_>>(), [11, 13, 14]);
        assert_eq!(candidates((10, 10), &used).count(), 0);
    }

    #[tokio::test]
    async fn a_port_another_program_holds_is_skipped_and_a_full_range_says_so() {
        let (lo, hi) = nexus_testkit::free_port_range(3);
        let ssh = ports((lo, hi));
        let _squatter = std::net::TcpListener::bind(("127.0.0.1", lo)).unwrap();
        let (port, _listener) = ssh.bind_free(&HashSet::from([lo + 1])).await.unwrap();
        assert_eq!(port, hi, "lo is bound by another program, lo+1 held by a workspace");
        let err = ssh.bind_free(&HashSet::from([lo + 1])).await.unwrap_err();
        let ServerError::Unavailable { code, message, hint } = err else { panic!("{err:?}") };
        assert_eq!(code, "ssh_ports_exhausted");
        assert_eq!(message, format!("all 3 SSH ports ({lo}-{hi}) are in use"));
        assert!(hint.contains("nexus workspace delete"), "{hint}");
    }

    #[tokio::test]
    async fn a_served_port_is_not_bound_twice_and_close_stops_its_task() {
        let (port, _) = nexus_testkit::free_port_range(1);
        let ssh = ports((port, port));
        let listener = ssh.bind(port).await.unwrap().expect("free");
        let task = tokio::spawn(async move {
            let _keep = listener;
            std::future::pending::<()>().await
        });
        ssh.serving(port, task.abort_handle());
        assert!(ssh.bind(port).await.unwrap().is_none(), "already served");
        ssh.close(port);
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(ssh.bind(port).await.unwrap().is_some(), "free again once closed");
    }
}
