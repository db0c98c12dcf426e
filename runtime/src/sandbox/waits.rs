//! `wasi:io/poll` and the blocking `wasi:io/streams` calls, ended at the
//! job's deadline.
//!
//! A guest blocked in a host call is out of reach of the epoch deadline.
//! [`super::deadline`] makes every timer end by the deadline; with
//! outbound HTTP, a guest can also wait on a stream nothing will ever
//! serve (write a request body it never sends, so no one reads it). Here
//! each wait that can block, `poll`, `pollable.block` and the streams'
//! `blocking-*` calls, races the job's deadline: when the deadline comes
//! first, the call traps, the job ends as `timeout`, and its thread is
//! free. Everything else is wasmtime-wasi's own implementation.

use std::time::Instant;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    HostInputStream as AsyncInput, HostOutputStream as AsyncOutput,
};

type StreamResult<T> = Result<T, StreamError>;

/// One job's resource table and deadline.
pub(crate) struct Waits<'a> {
    pub table: &'a mut ResourceTable,
    pub deadline: Instant,
    /// Set when a wait was cut off at the deadline (the job timed out).
    pub clamped: &'a mut bool,
}

const CUT: &str = "the job's deadline passed while it waited in a host call";

impl Waits<'_> {
    /// Run `wait` on the table until it ends or the deadline (plus the
    /// clock's slack) comes; `None` at the deadline.
    fn bounded<R>(&mut self, wait: impl AsyncFnOnce(&mut ResourceTable) -> R) -> Option<R> {
        let until = tokio::time::Instant::from_std(self.deadline + super::deadline::SLACK);
        let table = &mut *self.table;
        let done = in_tokio(async move { tokio::time::timeout_at(until, wait(table)).await.ok() });
        if done.is_none() {
            *self.clamped = true;
        }
        done
    }

    fn stream<T>(
        &mut self,
        wait: impl AsyncFnOnce(&mut ResourceTable) -> StreamResult<T>,
    ) -> StreamResult<T> {
        self.bounded(wait)
            .unwrap_or_else(|| Err(StreamError::trap(CUT)))
    }
}

impl poll::Host for Waits<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        self.bounded(async move |t| async_poll::Host::poll(t, pollables).await)
            .unwrap_or_else(|| Err(wasmtime::format_err!("{CUT}")))
    }
}

impl poll::HostPollable for Waits<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        poll::HostPollable::ready(self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.bounded(async move |t| async_poll::HostPollable::block(t, pollable).await)
            .unwrap_or_else(|| Err(wasmtime::format_err!("{CUT}")))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.table, pollable)
    }
}

impl streams::Host for Waits<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table, err)
    }
}

impl streams::HostOutputStream for Waits<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        streams::HostOutputStream::drop(self.table, stream)
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        self.stream(async move |t| AsyncOutput::blocking_write_and_flush(t, stream, bytes).await)
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        self.stream(async move |t| {
            AsyncOutput::blocking_write_zeroes_and_flush(t, stream, len).await
        })
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        self.stream(async move |t| AsyncOutput::blocking_flush(t, stream).await)
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        self.stream(async move |t| AsyncOutput::blocking_splice(t, dst, src, len).await)
    }
}

impl streams::HostInputStream for Waits<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        streams::HostInputStream::drop(self.table, stream)
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        self.stream(async move |t| AsyncInput::blocking_read(t, stream, len).await)
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        self.stream(async move |t| AsyncInput::blocking_skip(t, stream, len).await)
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.table, stream)
    }
}

/// Marks [`Waits`] as what the linker hands these host functions.
struct Bounded;

impl HasData for Bounded {
    type Data<'a> = Waits<'a>;
}

/// Replace wasmtime-wasi's `wasi:io/poll` and `wasi:io/streams` with the
/// job's bounded ones, which `waits` gets from the store's data.
pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    waits: fn(&mut T) -> Waits<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = poll::add_to_linker::<T, Bounded>(linker, waits)
        .and_then(|()| streams::add_to_linker::<T, Bounded>(linker, waits));
    linker.allow_shadowing(false);
    added
}
