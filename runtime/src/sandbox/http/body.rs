//! Request and response bodies with the job's bounds on them: bytes out
//! per job, bytes in per response, and the request's deadline while the
//! response body streams.

use super::Traffic;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;
use wasmtime_wasi_http::{Error, WasiBody};

/// The guest's request body, counted against the job's bytes out.
pub(super) struct Outgoing {
    pub inner: WasiBody,
    pub traffic: Arc<Traffic>,
    pub index: usize,
    /// Bytes out per job, all requests together.
    pub cap: u64,
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            let total = self.traffic.bytes_out.fetch_add(n, Ordering::Relaxed) + n;
            self.traffic.update(self.index, |c| c.bytes_out += n);
            if total > self.cap {
                return Poll::Ready(Some(Err(Error::HttpRequestBodySize(Some(self.cap)))));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body: capped, ended at the request's deadline (and between
/// frames, if the guest asked), and counted into the job's record.
pub(super) struct Incoming {
    pub inner: hyper::body::Incoming,
    pub deadline: Pin<Box<Sleep>>,
    /// The request's deadline is the job's: hitting it times the job out.
    pub at_job_deadline: bool,
    /// `between-bytes-timeout`, and its timer.
    pub between: Option<(Duration, Pin<Box<Sleep>>)>,
    pub cap: u64,
    pub read: u64,
    pub traffic: Arc<Traffic>,
    pub index: usize,
    pub started: Instant,
    pub done: bool,
}

impl Incoming {
    /// The body ended (or failed): its duration and error go on record.
    fn finish(&mut self, error: Option<Error>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.done = true;
        let ms = self.started.elapsed().as_millis() as u64;
        let code = error.as_ref().map(super::error_code);
        self.traffic.update(self.index, |c| {
            c.ms = ms;
            c.error = c.error.take().or(code);
        });
        Poll::Ready(error.map(Err))
    }
}

impl Body for Incoming {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    self.read += n;
                    self.traffic.update(self.index, |c| c.bytes_in += n);
                    if self.read > self.cap {
                        let cap = self.cap;
                        return self.finish(Some(Error::HttpResponseBodySize(Some(cap))));
                    }
                }
                if let Some((every, timer)) = &mut self.between {
                    timer.as_mut().reset(tokio::time::Instant::now() + *every);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => self.finish(Some(Error::from(e))),
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    if self.at_job_deadline {
                        self.traffic.overran.store(true, Ordering::Relaxed);
                    }
                    return self.finish(Some(Error::HttpResponseTimeout));
                }
                if let Some((_, timer)) = &mut self.between
                    && timer.as_mut().poll(cx).is_ready()
                {
                    return self.finish(Some(Error::ConnectionReadTimeout));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.done {
            // The guest let go of the body before its end.
            let ms = self.started.elapsed().as_millis() as u64;
            self.traffic.update(self.index, |c| c.ms = ms);
        }
    }
}
