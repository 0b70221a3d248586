//! Desk connectors: one module per customer-service desk. A connector takes a customer
//! message and returns what the desk wants WeChat to answer.

pub(crate) mod echo;
pub(crate) mod tencent_im;
pub mod udesk_im;
pub(crate) mod udesk_wechat;

use std::time::Duration;

use async_trait::async_trait;

use crate::wechat::message::Message;

/// What the desk answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeskReply {
    /// Nothing to say now (agents answer later through the send API).
    Empty,
    /// A passive-reply XML document, already checked to be one.
    Passive(String),
    /// A passive reply that a named agent said (Udesk's `agent_name`): shown with their
    /// name where the channel can (the Dialogue Platform's `kefuname`).
    Said { xml: String, agent: String },
}

impl DeskReply {
    /// The reply for a channel that cannot show who said it.
    pub fn unsigned(self) -> DeskReply {
        match self {
            DeskReply::Said { xml, .. } => DeskReply::Passive(xml),
            other => other,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("the desk did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not reach the desk: {0}")]
    Transport(String),
    #[error("the desk answered HTTP {0}")]
    Status(u16),
    /// The desk took the message but its answer is unusable.
    #[error("the desk's answer is not a passive reply ({0}); WeChat gets `success` instead")]
    UnexpectedAnswer(String),
    /// The desk answered that it will not take this message: no retry can help.
    #[error("the desk refused the message for good: {0}")]
    Refused(String),
    /// The message could not be made ready for the desk (its media could not be staged):
    /// not sent, worth another attempt.
    #[error("the message could not be prepared for the desk: {0}")]
    NotForwarded(String),
    /// The connector's own error, kept whole for the log's source chain.
    #[error("the desk refused the message: {0}")]
    Connector(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl DeskError {
    /// Whether trying again can never succeed: the desk refused the request itself (a 4xx
    /// other than a timeout or a rate limit). Timeouts, resets, 5xx and a connector's own
    /// errors are worth another attempt.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            DeskError::Status(s) => (400..500).contains(s) && *s != 408 && *s != 429,
            DeskError::Refused(_) => true,
            _ => false,
        }
    }
}

impl From<crate::support::outbound::SendError> for DeskError {
    fn from(e: crate::support::outbound::SendError) -> Self {
        use crate::support::outbound::SendError;
        match e {
            SendError::Timeout(d) => DeskError::Timeout(d),
            SendError::Transport(m) => DeskError::Transport(m),
            SendError::Read(r) => DeskError::UnexpectedAnswer(r.to_string()),
        }
    }
}

#[async_trait]
pub trait Desk: Send + Sync {
    /// `xml` is the message as WeChat XML (as received, or converted from JSON).
    async fn forward(
        &self,
        msg: &Message,
        xml: &str,
        timeout: Duration,
    ) -> Result<DeskReply, DeskError>;

    /// Whether the desk answers and accepts our credentials (for `doctor`): what was
    /// found, or why not.
    async fn check(&self) -> Result<String, String>;

    /// Tells `agent` that their message to `openid` will never reach the customer, and
    /// why. Desks that hear of a failure in their own call's answer (Udesk) need nothing
    /// more; Tencent IM's after-send callback has no answer to carry it.
    async fn undelivered(&self, _openid: &str, _agent: &str, _reason: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Forwards within `budget`: the desk is told its budget, and one that overruns it anyway
/// is cut off as a `Timeout`.
pub(crate) async fn forward_within(
    desk: &dyn Desk,
    msg: &Message,
    xml: &str,
    budget: Duration,
) -> Result<DeskReply, DeskError> {
    tokio::time::timeout(budget, desk.forward(msg, xml, budget))
        .await
        .unwrap_or(Err(DeskError::Timeout(budget)))
}
