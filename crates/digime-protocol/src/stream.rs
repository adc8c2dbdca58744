//! A call whose 2xx answer is streamed to the caller's sink through a decoder: the
//! portability report (as it is) and a storage download (decrypted). The request is
//! any [`Flow`] (with its own retries and refresh rule) whose request is marked
//! [`StreamResponse`]; once it is answered with a 2xx, the driver is asked to stream
//! the body ([`Step::Receive`]), each chunk goes through the [`BodyDecode`], and the
//! output goes to the driver's sink.
//!
//! ```text
//!  ┌───────────────────┐ 2xx   ┌────────────────────────────┐ end, decoder ok ┌──────┐
//!  │ the request's flow├──────▶│ Receive: chunks → decoder → ├───────────────▶│ Done │
//!  └─────────┬─────────┘       └──────┬──────────────┬──────┘                 └──────┘
//!            │ error                  │ bad data     │ connection lost
//!            ▼                        ▼              ▼ (never retried: bytes may
//!        Done(Err)                Done(Err)       Done(Err)   have reached the sink)
//! ```
//!
//! [`StreamResponse`]: crate::read::StreamResponse

use crate::error::{Error, TransportError, TransportErrorKind};
use crate::file::FileDecoder;
use crate::flow::{Flow, Step, misuse};
use http::Response;
use std::fmt;
use std::time::SystemTime;

/// Turns a streamed body into what the caller's sink gets.
pub trait BodyDecode {
    /// Appends to `out` what `chunk`, the next bytes of the body, gives (a bounded
    /// step of it; see [`BodyDecode::has_pending`]).
    fn update(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error>;
    /// Whether more output is ready without more input.
    fn has_pending(&self) -> bool {
        false
    }
    /// Appends the next step of the output that is ready.
    fn drain(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let _ = out;
        Ok(())
    }
    /// The body ended: appends a step of what that makes ready (drain the rest).
    fn end_input(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let _ = out;
        Ok(())
    }
    /// Checks the body was complete and appends the rest to `out`.
    fn finish(self, out: &mut Vec<u8>) -> Result<(), Error>;
}

/// The body as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl BodyDecode for Plain {
    fn update(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        out.extend_from_slice(chunk);
        Ok(())
    }
    fn finish(self, _: &mut Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
}

impl BodyDecode for FileDecoder {
    fn update(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        FileDecoder::update(self, chunk, out)
    }
    fn has_pending(&self) -> bool {
        FileDecoder::has_pending(self)
    }
    fn drain(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        FileDecoder::drain(self, out)
    }
    fn end_input(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        FileDecoder::end_input(self, out)
    }
    fn finish(self, out: &mut Vec<u8>) -> Result<(), Error> {
        FileDecoder::finish(self, out)
    }
}

enum Phase<T, D> {
    Request,
    Body {
        value: T,
        decoder: Option<D>,
        receiving: bool,
        /// The body ended; output is still being drained.
        ending: bool,
        outcome: Option<Result<(), Error>>,
    },
    Finished,
}

/// A request whose 2xx body is streamed to the sink through `D`; see the module docs.
/// Its result is the request flow's (for example [`crate::Authed`]), once the whole
/// body has been decoded.
pub struct Streamed<F: Flow, D> {
    request: F,
    decoder: Option<D>,
    phase: Phase<F::Output, D>,
    /// Most bytes handed to the sink, if bounded.
    limit: Option<u64>,
    emitted: u64,
}

impl<F: Flow, D: BodyDecode> Streamed<F, D> {
    /// Streams the answer of `request` through `decoder`.
    pub fn new(request: F, decoder: D) -> Self {
        Streamed {
            request,
            decoder: Some(decoder),
            phase: Phase::Request,
            limit: None,
            emitted: 0,
        }
    }

    /// Fails the call ([`TransportErrorKind::ResponseTooLarge`]) once the sink would get
    /// more than `max` bytes: for a body read into memory.
    pub fn with_output_limit(mut self, max: u64) -> Self {
        self.limit = Some(max);
        self
    }

    /// Counts `n` more bytes for the sink: an error past the limit.
    fn count(&mut self, n: usize) -> Result<(), Error> {
        self.emitted = self.emitted.saturating_add(n as u64);
        match self.limit {
            Some(max) if self.emitted > max => Err(Error::Transport(TransportError::new(
                TransportErrorKind::ResponseTooLarge,
                format!("the answer is over {max} bytes"),
            ))),
            _ => Ok(()),
        }
    }

    fn finish(&mut self, result: Result<F::Output, Error>) -> Step<F::Output> {
        self.phase = Phase::Finished;
        Step::Done(result)
    }
}

impl<F: Flow, D: BodyDecode> Flow for Streamed<F, D> {
    type Output = F::Output;

    fn poll(&mut self, now: SystemTime) -> Step<F::Output> {
        match &mut self.phase {
            Phase::Request => match self.request.poll(now) {
                Step::Done(Ok(value)) => {
                    self.phase = Phase::Body {
                        value,
                        decoder: self.decoder.take(),
                        receiving: true,
                        ending: false,
                        outcome: None,
                    };
                    Step::Receive
                }
                Step::Done(Err(e)) => self.finish(Err(e)),
                Step::Receive => self.finish(Err(misuse("the request streams on its own"))),
                other => other,
            },
            Phase::Body {
                receiving: true, ..
            } => self.finish(Err(misuse("poll before the body was handed over"))),
            Phase::Body { .. } => {
                let Phase::Body { value, outcome, .. } =
                    std::mem::replace(&mut self.phase, Phase::Finished)
                else {
                    unreachable!("matched above")
                };
                match outcome {
                    Some(Ok(())) => self.finish(Ok(value)),
                    Some(Err(e)) => self.finish(Err(e)),
                    None => self.finish(Err(misuse("no body outcome"))),
                }
            }
            Phase::Finished => Step::Done(Err(misuse("poll after Done"))),
        }
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        if let Phase::Request = self.phase {
            self.request.handle_response(response);
        }
    }

    fn handle_transport_error(&mut self, error: TransportError) {
        match &mut self.phase {
            Phase::Request => self.request.handle_transport_error(error),
            Phase::Body {
                receiving, outcome, ..
            } => {
                // A sink that failed on the last write still spoils a finished body.
                let sink = error.kind == TransportErrorKind::Sink;
                if *receiving || sink {
                    *receiving = false;
                    if outcome.is_none() || sink {
                        *outcome = Some(Err(Error::Transport(error)));
                    }
                }
            }
            Phase::Finished => {}
        }
    }

    fn handle_body(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> bool {
        let Phase::Body {
            decoder: Some(decoder),
            receiving,
            ..
        } = &mut self.phase
        else {
            return false;
        };
        if !*receiving {
            return false;
        }
        let before = out.len();
        let result = decoder.update(chunk, out);
        let result = result.and_then(|()| self.count(out.len() - before));
        let Phase::Body {
            receiving, outcome, ..
        } = &mut self.phase
        else {
            return false;
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                *outcome = Some(Err(e));
                *receiving = false;
                false
            }
        }
    }

    fn handle_body_end(&mut self, out: &mut Vec<u8>) {
        let Phase::Body {
            decoder, receiving, ..
        } = &mut self.phase
        else {
            return;
        };
        if !*receiving {
            return;
        }
        let Some(mut d) = decoder.take() else {
            return self.end_body(Err(misuse("body ended twice")));
        };
        let before = out.len();
        let result = d.end_input(out);
        let result = result.and_then(|()| self.count(out.len() - before));
        if let Err(e) = result {
            return self.end_body(Err(e));
        }
        if d.has_pending() {
            if let Phase::Body {
                decoder, ending, ..
            } = &mut self.phase
            {
                *decoder = Some(d);
                *ending = true;
            }
            return;
        }
        self.finish_body(d, out);
    }

    fn handle_body_drain(&mut self, out: &mut Vec<u8>) -> bool {
        let Phase::Body {
            decoder,
            receiving: true,
            ending,
            ..
        } = &mut self.phase
        else {
            return false;
        };
        let ending = *ending;
        let Some(mut d) = decoder.take_if(|d| d.has_pending()) else {
            return false;
        };
        let before = out.len();
        let result = d.drain(out);
        let result = result.and_then(|()| self.count(out.len() - before));
        if let Err(e) = result {
            self.end_body(Err(e));
            return false;
        }
        let more = d.has_pending();
        if !more && ending {
            self.finish_body(d, out);
            return false;
        }
        if let Phase::Body { decoder, .. } = &mut self.phase {
            *decoder = Some(d);
        }
        more
    }
}

impl<F: Flow, D: BodyDecode> Streamed<F, D> {
    /// The body is over: this is its outcome (unless it already has one).
    fn end_body(&mut self, result: Result<(), Error>) {
        if let Phase::Body {
            outcome, receiving, ..
        } = &mut self.phase
        {
            *receiving = false;
            if outcome.is_none() {
                *outcome = Some(result);
            }
        }
    }

    fn finish_body(&mut self, d: D, out: &mut Vec<u8>) {
        let before = out.len();
        let result = d.finish(out);
        let result = result.and_then(|()| self.count(out.len() - before));
        self.end_body(result);
    }
}

impl<F: Flow + fmt::Debug, D> fmt::Debug for Streamed<F, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Request => "request",
            Phase::Body { .. } => "body",
            Phase::Finished => "finished",
        };
        f.debug_struct("Streamed")
            .field("request", &self.request)
            .field("phase", &phase)
            .finish_non_exhaustive()
    }
}
