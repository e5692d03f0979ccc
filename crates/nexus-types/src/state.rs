//! The workspace state machine: every allowed transition is decided by [`WorkspaceStatus::apply`].
//!
//! The server applies it to requests and to agent reports; nothing else changes a workspace's status.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a workspace is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceStatus {
    /// Recorded and waiting for its node to act (new, or a stopped one asked to start).
    Pending,
    /// The node is building the container: launch, SSH, clone.
    Creating,
    /// Container up, sshd answering, repo cloned.
    Running,
    /// Container stopped; the disk and the SSH port are kept.
    Stopped,
    /// Something went wrong; `message` and `hint` say what and what to do.
    Failed,
}

impl WorkspaceStatus {
    /// Every status, for exhaustive tests and docs.
    pub const ALL: [WorkspaceStatus; 5] = [
        WorkspaceStatus::Pending,
        WorkspaceStatus::Creating,
        WorkspaceStatus::Running,
        WorkspaceStatus::Stopped,
        WorkspaceStatus::Failed,
    ];

    /// The lowercase name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceStatus::Pending => "pending",
            WorkspaceStatus::Creating => "creating",
            WorkspaceStatus::Running => "running",
            WorkspaceStatus::Stopped => "stopped",
            WorkspaceStatus::Failed => "failed",
        }
    }

    /// Parses the name stored in the database.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Decides the status after `event`.
    ///
    /// `Ok(Transition::Unchanged)` means the event is a repeat of what already happened (idempotent
    /// requests, duplicate reports); `Err` means the event makes no sense in this status.
    pub fn apply(self, event: Event) -> Result<Transition, TransitionError> {
        use Event as E;
        use WorkspaceStatus as S;
        let to = match (self, event) {
            // The node took the create/start command.
            (S::Pending, E::Dispatched) => S::Creating,
            (S::Creating, E::Dispatched) => return Ok(Transition::Unchanged),

            // The node says the workspace is up.
            (S::Pending | S::Creating, E::Ready) => S::Running,
            (S::Running, E::Ready) => return Ok(Transition::Unchanged),

            // The user asks to stop; the node confirms.
            (S::Running | S::Creating | S::Pending | S::Failed, E::Halted) => S::Stopped,
            (S::Stopped, E::Halted) => return Ok(Transition::Unchanged),

            // The user asks to start a stopped workspace, or to retry a failed one.
            (S::Stopped | S::Failed, E::StartRequested) => S::Pending,
            (S::Pending | S::Creating | S::Running, E::StartRequested) => return Ok(Transition::Unchanged),

            // The node reports a failure while building or starting.
            (S::Pending | S::Creating | S::Running, E::Failed) => S::Failed,
            (S::Failed, E::Failed) => return Ok(Transition::Unchanged),

            (from, event) => return Err(TransitionError { from, event }),
        };
        Ok(Transition::To(to))
    }
}

impl std::fmt::Display for WorkspaceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can happen to a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The server handed a create/start command to the workspace's node.
    Dispatched,
    /// The node reports the workspace up and reachable.
    Ready,
    /// The node reports the container stopped.
    Halted,
    /// A user asks to start (or retry) the workspace.
    StartRequested,
    /// The node reports a failure.
    Failed,
}

/// The outcome of applying an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The workspace moves to this status.
    To(WorkspaceStatus),
    /// The event repeats what already happened; nothing changes.
    Unchanged,
}

/// An event that makes no sense in the current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a workspace that is {from} cannot take {event:?}")]
pub struct TransitionError {
    /// The status the workspace was in.
    pub from: WorkspaceStatus,
    /// The event that was refused.
    pub event: Event,
}

/// Where a service in a workspace is; the agent reports it, the server stores it, the CLI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    /// Set up or started, waiting for its health check to pass (or its dependencies to be healthy).
    Starting,
    /// Its health check passes.
    Running,
    /// It was running and its health check has failed `retries` times in a row; it may recover.
    Unhealthy,
    /// It exited, never became healthy in time, or a dependency failed; `message` says which.
    Failed,
    /// The workspace is not running (only in the API's view; agents never report it).
    Stopped,
}

impl ServiceStatus {
    /// Every status, for exhaustive tests and docs.
    pub const ALL: [ServiceStatus; 5] = [
        ServiceStatus::Starting,
        ServiceStatus::Running,
        ServiceStatus::Unhealthy,
        ServiceStatus::Failed,
        ServiceStatus::Stopped,
    ];

    /// The lowercase name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Starting => "starting",
            ServiceStatus::Running => "running",
            ServiceStatus::Unhealthy => "unhealthy",
            ServiceStatus::Failed => "failed",
            ServiceStatus::Stopped => "stopped",
        }
    }

    /// Parses the name stored in the database.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Settled: waiting longer changes nothing by itself. Everything but `starting` — a client that
    /// waits for services to come up stops waiting once every service is settled.
    pub fn is_settled(self) -> bool {
        !matches!(self, ServiceStatus::Starting)
    }
}

impl std::fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{Event as E, Transition as T, WorkspaceStatus as S};

    /// Every (status, event) pair with its expected outcome; `None` means refused.
    /// The table covers the full cross product, so a new status or event fails the length check.
    const TABLE: &[(S, E, Option<T>)] = &[
        (S::Pending, E::Dispatched, Some(T::To(S::Creating))),
        (S::Pending, E::Ready, Some(T::To(S::Running))),
        (S::Pending, E::Halted, Some(T::To(S::Stopped))),
        (S::Pending, E::StartRequested, Some(T::Unchanged)),
        (S::Pending, E::Failed, Some(T::To(S::Failed))),
        (S::Creating, E::Dispatched, Some(T::Unchanged)),
        (S::Creating, E::Ready, Some(T::To(S::Running))),
        (S::Creating, E::Halted, Some(T::To(S::Stopped))),
        (S::Creating, E::StartRequested, Some(T::Unchanged)),
        (S::Creating, E::Failed, Some(T::To(S::Failed))),
        (S::Running, E::Dispatched, None),
        (S::Running, E::Ready, Some(T::Unchanged)),
        (S::Running, E::Halted, Some(T::To(S::Stopped))),
        (S::Running, E::StartRequested, Some(T::Unchanged)),
        (S::Running, E::Failed, Some(T::To(S::Failed))),
        (S::Stopped, E::Dispatched, None),
        (S::Stopped, E::Ready, None),
        (S::Stopped, E::Halted, Some(T::Unchanged)),
        (S::Stopped, E::StartRequested, Some(T::To(S::Pending))),
        (S::Stopped, E::Failed, None),
        (S::Failed, E::Dispatched, None),
        (S::Failed, E::Ready, None),
        (S::Failed, E::Halted, Some(T::To(S::Stopped))),
        (S::Failed, E::StartRequested, Some(T::To(S::Pending))),
        (S::Failed, E::Failed, Some(T::Unchanged)),
    ];

    #[test]
    fn every_edge_matches_the_table() {
        let events = [E::Dispatched, E::Ready, E::Halted, E::StartRequested, E::Failed];
        assert_eq!(TABLE.len(), S::ALL.len() * events.len(), "table must cover every pair");
        for &(from, event, expected) in TABLE {
            let got = from.apply(event).ok();
            assert_eq!(got, expected, "{from} + {event:?}");
        }
    }

    #[test]
    fn a_stale_ready_after_stop_is_refused() {
        // A late "ready" report for a workspace the user already stopped must not revive it.
        assert!(S::Stopped.apply(E::Ready).is_err());
    }

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert_eq!(S::parse("deleted"), None);
    }

    #[test]
    fn service_names_round_trip_and_only_starting_is_unsettled() {
        use super::ServiceStatus;
        for s in ServiceStatus::ALL {
            assert_eq!(ServiceStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
            assert_eq!(s.is_settled(), s != ServiceStatus::Starting, "{s}");
        }
        assert_eq!(ServiceStatus::parse("healthy"), None);
    }
}
