//! Why a node could not pass a command to an event, and the one place
//! these errors become wire replies (`From<NodeError> for Reply`).

use onsale_schema::limits::ROUTER_CALL_TIMEOUT_MS;
use onsale_schema::message::Reply;
use onsale_schema::spec::SpecError;
use onsale_schema::{ErrorCode, EventId};

use super::owners::owner_of;
use super::restore::RestoreError;
use crate::store::{EventLease, StoreError};

/// Why the router did not answer a call.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(
        "the node's router did not answer within {ROUTER_CALL_TIMEOUT_MS} ms (it activates events one at a time); retry shortly"
    )]
    Timeout,
    #[error("the node's router is not running: {0}")]
    Gone(String),
}

/// Why an event could not be activated (owned and started) here.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("no such event")]
    UnknownEvent,
    /// Another node holds the event's lease: this one.
    #[error("{} owns this event (lease epoch {})", .0.node, .0.epoch)]
    NotOwner(EventLease),
    #[error("event state cannot be restored: {0}")]
    Unrestorable(#[from] RestoreError),
    #[error("event actor failed to start: {0}")]
    ActorStart(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an event could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("event spec refused: {0}")]
    BadSpec(#[from] SpecError),
    #[error("{0} already exists; an event's venue and settings cannot be replaced")]
    Exists(EventId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything that keeps a node from passing a command to an event.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error(transparent)]
    Activate(#[from] ActivateError),
    #[error(transparent)]
    Create(#[from] CreateError),
}

impl From<NodeError> for Reply {
    /// Exhaustive on purpose: a new error must be given a code here.
    fn from(error: NodeError) -> Reply {
        let code = match &error {
            NodeError::Activate(ActivateError::NotOwner(lease)) => {
                return Reply::NotOwner {
                    owner: owner_of(lease),
                };
            }
            NodeError::Router(RouterError::Timeout | RouterError::Gone(_)) => ErrorCode::Busy,
            NodeError::Activate(ActivateError::UnknownEvent) => ErrorCode::UnknownEvent,
            NodeError::Activate(
                ActivateError::Unrestorable(_)
                | ActivateError::ActorStart(_)
                | ActivateError::Store(_),
            ) => ErrorCode::Internal,
            NodeError::Create(CreateError::BadSpec(_)) => ErrorCode::BadRequest,
            NodeError::Create(CreateError::Exists(_)) => ErrorCode::EventExists,
            NodeError::Create(CreateError::Store(_)) => ErrorCode::Internal,
        };
        Reply::error(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use onsale_schema::Millis;
    use onsale_schema::message::EventOwner;

    use super::*;
    use crate::store::NodeId;

    #[test]
    fn not_owner_names_the_owner_and_its_epoch() {
        let lease = EventLease {
            event: EventId(7),
            node: NodeId("node@127.0.0.1:7071".into()),
            epoch: 3,
            expires: Millis(9_000),
        };
        let reply = Reply::from(NodeError::from(ActivateError::NotOwner(lease)));
        let owner = EventOwner {
            node: "node@127.0.0.1:7071".into(),
            epoch: 3,
            lease_expires: Millis(9_000),
        };
        assert_eq!(reply, Reply::NotOwner { owner });
        assert_eq!(reply.error_code(), Some(ErrorCode::NotOwner));
    }

    #[test]
    fn a_router_timeout_is_busy_and_says_so() {
        let reply = Reply::from(NodeError::from(RouterError::Timeout));
        let Reply::Error { code, message } = reply else {
            panic!("{reply:?}");
        };
        assert_eq!(code, ErrorCode::Busy);
        assert!(message.contains("did not answer within"), "{message}");
    }
}
