//! A refused request as a typed error: `Refused<P>` carries the status and the reason,
//! and the protocol `P` of the route decides what the caller reads (WeChat wants plain
//! text, Udesk `{"success": false}`, Tencent IM `ActionStatus: FAIL`, the Dialogue
//! Platform `errcode`). Checks return `Result<_, Refused<P>>` and use `?`; the one place
//! a refusal becomes a response also writes its log line, throttled per reason so that a
//! flood of bad requests cannot flood the log.

use std::borrow::Cow;
use std::marker::PhantomData;

use super::Response;
use crate::support::throttle::log_refusal;

/// How one route's caller is answered when its request is refused.
pub(crate) trait Protocol {
    /// The route's name in the log, and the throttle's key.
    const ROUTE: &'static str;
    /// What the log line says happened.
    const EVENT: &'static str;
    /// What the caller reads of a request that cannot be opened, whatever the reason.
    const UNREADABLE: &'static str = "invalid request";
    /// The protocol's answer to a refusal with `status` and `why`.
    fn answer(status: u16, why: &str) -> Response;
}

/// A request refused, for the protocol `P`.
#[derive(Debug)]
pub(crate) struct Refused<P> {
    what: What,
    appid: String,
    protocol: PhantomData<P>,
}

#[derive(Debug)]
enum What {
    /// The route does not exist for this account: the same 404 as an unknown path, in
    /// every protocol, so that a probe learns nothing.
    NoSuchRoute,
    Status(u16, Cow<'static, str>),
    /// A request that cannot be opened (its ciphertext, padding, receive-id, plaintext):
    /// one answer, 400 and the protocol's `UNREADABLE`, whatever the reason, so that the route is no
    /// decryption oracle. The reason goes to the log only.
    Unreadable(Cow<'static, str>),
}

impl<P: Protocol> Refused<P> {
    /// Refused with `status`; `why` is what the caller reads and the log records, so it
    /// must never hold a secret or the request's content.
    pub(crate) fn new(status: u16, appid: &str, why: impl Into<Cow<'static, str>>) -> Self {
        Self {
            what: What::Status(status, why.into()),
            appid: appid.to_owned(),
            protocol: PhantomData,
        }
    }

    /// A request that cannot be opened; `why` is logged, never answered.
    pub(crate) fn unreadable(appid: &str, why: impl Into<Cow<'static, str>>) -> Self {
        Self {
            what: What::Unreadable(why.into()),
            appid: appid.to_owned(),
            protocol: PhantomData,
        }
    }

    /// The route is closed for this account.
    pub(crate) fn no_such_route(appid: &str) -> Self {
        Self {
            what: What::NoSuchRoute,
            appid: appid.to_owned(),
            protocol: PhantomData,
        }
    }

    /// The status the caller gets.
    pub(crate) fn status(&self) -> u16 {
        match &self.what {
            What::NoSuchRoute => 404,
            What::Status(status, _) => *status,
            What::Unreadable(_) => 400,
        }
    }
}

impl<P: Protocol> From<Refused<P>> for Response {
    fn from(r: Refused<P>) -> Response {
        let status = r.status();
        let why = match &r.what {
            What::NoSuchRoute => "route closed for this appid",
            What::Status(_, why) | What::Unreadable(why) => why.as_ref(),
        };
        if let Some(suppressed) = log_refusal(P::ROUTE, why) {
            tracing::warn!(
                route = P::ROUTE,
                appid = r.appid,
                status,
                reason = why,
                suppressed,
                "{}",
                P::EVENT
            );
        }
        match r.what {
            What::NoSuchRoute => Response::no_such_route(),
            What::Status(..) => P::answer(status, why),
            What::Unreadable(_) => P::answer(400, P::UNREADABLE),
        }
    }
}

/// A handler's result, turned into what its caller reads: a response as it is, or a
/// refusal in its protocol.
pub(crate) trait Answer {
    fn answer(self) -> Response;
}

impl Answer for Response {
    fn answer(self) -> Response {
        self
    }
}

impl<P: Protocol> Answer for Result<Response, Refused<P>> {
    fn answer(self) -> Response {
        self.unwrap_or_else(Response::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Plain;
    impl Protocol for Plain {
        const ROUTE: &'static str = "test";
        const EVENT: &'static str = "test refused";
        fn answer(status: u16, why: &str) -> Response {
            Response::text(status, format!("plain: {why}"))
        }
    }

    #[test]
    fn the_protocol_answers_and_a_closed_route_is_an_unknown_path() {
        let r: Response = Refused::<Plain>::new(401, "wx1", "bad signature").into();
        assert_eq!(
            (r.status, r.body.as_ref()),
            (401, &b"plain: bad signature"[..])
        );
        let closed = Refused::<Plain>::no_such_route("wx1");
        assert_eq!(closed.status(), 404);
        let r: Response = closed.into();
        let unknown = Response::no_such_route();
        assert_eq!((r.status, r.body), (unknown.status, unknown.body));
        let r: Response = Refused::<Plain>::unreadable("wx1", "bad padding").into();
        assert_eq!(
            (r.status, r.body.as_ref()),
            (400, &b"plain: invalid request"[..])
        );
    }
}
