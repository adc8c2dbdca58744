//! Calls made with the contract alone (no user token): one request, retried as its
//! policy says, and no refresh. Each endpoint implements [`ClientOperation`] in its
//! own module; [`ClientCall`] runs it.

use crate::config::Contract;
use crate::error::{Error, TransportError};
use crate::flow::{Flow, Leg, Step, Sub};
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::trace;
use crate::wire::{self, Body};
use http::{Method, Request, Response};
use std::fmt;
use std::time::SystemTime;

/// One API call authenticated by the contract's key only.
pub trait ClientOperation {
    /// What the call returns.
    type Output;
    /// The HTTP method (for the retry policy).
    fn method(&self) -> Method;
    /// The retry policy of this call.
    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.clone()
    }
    /// Builds the request for one attempt, signed with the contract's key.
    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        now: SystemTime,
    ) -> Result<Request<Body>, Error>;
    /// Parses a 2xx response.
    fn parse(&self, response: Response<Vec<u8>>) -> Result<Self::Output, Error>;
}

/// Runs a [`ClientOperation`]: its request, retried per its policy; a non-2xx answer
/// is the error of `docs/protocol.md`, "Errors".
pub struct ClientCall<O> {
    sdk: Sdk,
    contract: Contract,
    op: O,
    leg: Leg,
}

impl<O: ClientOperation> ClientCall<O> {
    /// Wraps `op`, to be run for `contract`.
    pub fn new(sdk: Sdk, contract: Contract, op: O) -> Self {
        let leg = Leg::new(
            trace::operation_name::<O>(),
            op.method(),
            op.retry_policy(&sdk),
        );
        ClientCall {
            sdk,
            contract,
            op,
            leg,
        }
    }

    /// The operation.
    pub fn operation(&self) -> &O {
        &self.op
    }
}

impl<O: ClientOperation> Flow for ClientCall<O> {
    type Output = O::Output;

    fn poll(&mut self, now: SystemTime) -> Step<O::Output> {
        let (sdk, contract, op) = (&self.sdk, &self.contract, &self.op);
        match self.leg.poll(now, |now| op.build(sdk, contract, now)) {
            Sub::Send(r) => Step::Send(r),
            Sub::Sleep(d) => Step::Sleep(d),
            Sub::Done(Err(e)) => Step::Done(Err(e)),
            Sub::Done(Ok(resp)) if wire::is_success(&resp) => match self.op.parse(resp) {
                Err(e) => match self.leg.retry_malformed(&e, now) {
                    Some(delay) => Step::Sleep(delay),
                    None => Step::Done(Err(e)),
                },
                ok => Step::Done(ok),
            },
            Sub::Done(Ok(resp)) => Step::Done(Err(wire::error_from_response(&resp, now))),
        }
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        self.leg.handle(Ok(response));
    }

    fn handle_transport_error(&mut self, error: TransportError) {
        self.leg.handle(Err(error));
    }
}

impl<O> fmt::Debug for ClientCall<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCall")
            .field("operation", &std::any::type_name::<O>())
            .field("contract", &self.contract.id())
            .finish_non_exhaustive()
    }
}
