//! Connection limits of the REST listener, as an [`axum::serve::Listener`] wrapper: at most
//! [`MAX_CONNECTIONS`] open (the next waits in the kernel's backlog, where it costs no file
//! descriptor, instead of failing `accept` with "Too many open files"), at most
//! [`MAX_PER_SOURCE`] from one address (the rest are closed at once), and the first request's
//! headers must be complete within [`HEADER_READ_TIMEOUT`] (a slowloris client is cut off instead
//! of holding its connection for ever).
//!
//! After the first request a connection is left alone: agents' sessions and tunnels are long-lived
//! WebSockets, idle at times.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections the API holds open at once (agents' tunnels included); keep well under the
/// process's `nofile` limit (the systemd units set 1048576; a shell's default is often 1024).
pub const MAX_CONNECTIONS: usize = 8192;
/// Connections one address may hold. High, because a node's agent opens one tunnel per SSH
/// session and forwarded port; low enough that one address cannot take the whole listener.
pub const MAX_PER_SOURCE: usize = 512;
/// Time from accept until the first request's headers are complete.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `inner` with the limits of this module.
pub fn limited<L>(inner: L) -> Limited<L>
where
    L: Listener<Addr = SocketAddr>,
{
    Limited {
        inner,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        sources: Arc::new(Mutex::new(HashMap::new())),
        per_source: MAX_PER_SOURCE,
        header_timeout: HEADER_READ_TIMEOUT,
    }
}

/// A listener handing out [`LimitedIo`] connections.
pub struct Limited<L> {
    inner: L,
    slots: Arc<Semaphore>,
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_source: usize,
    header_timeout: Duration,
}

impl<L> Limited<L> {
    /// The same listener with other limits (for tests).
    pub fn with_limits(mut self, total: usize, per_source: usize, header_timeout: Duration) -> Self {
        self.slots = Arc::new(Semaphore::new(total));
        self.per_source = per_source;
        self.header_timeout = header_timeout;
        self
    }
}

/// One connection counted against its source address until dropped.
struct SourceCount {
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for SourceCount {
    fn drop(&mut self) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = sources.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                sources.remove(&self.ip);
            }
        }
    }
}

impl<L> Listener for Limited<L>
where
    L: Listener<Addr = SocketAddr>,
    L::Io: Unpin,
{
    type Io = LimitedIo<L::Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // Waiting here leaves further clients in the backlog rather than failing accept().
            let slot = self.slots.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (io, addr) = self.inner.accept().await;
            let counted = {
                let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
                let n = sources.entry(addr.ip()).or_insert(0);
                if *n >= self.per_source {
                    None
                } else {
                    *n += 1;
                    Some(SourceCount { sources: self.sources.clone(), ip: addr.ip() })
                }
            };
            let Some(source) = counted else {
                tracing::debug!(peer = %addr, "closing a connection: too many from this address");
                continue;
            };
            let io = LimitedIo {
                inner: io,
                _slot: slot,
                _source: source,
                deadline: Some(Box::pin(tokio::time::sleep(self.header_timeout))),
                tail: [0; 3],
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its slots; until the first request's headers are in, reads fail once
/// the header deadline has passed.
pub struct LimitedIo<T> {
    inner: T,
    _slot: OwnedSemaphorePermit,
    _source: SourceCount,
    /// Pending until the first blank line (end of the headers) has been read.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The last three bytes read, so a `\r\n\r\n` split over reads is found.
    tail: [u8; 3],
}

impl<T> LimitedIo<T> {
    /// The connection itself (to set socket options).
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

/// Whether `\r\n\r\n` ends within `tail ++ new`.
fn headers_end(tail: &[u8; 3], new: &[u8]) -> bool {
    let mut window: Vec<u8> = tail.to_vec();
    window.extend_from_slice(new);
    window.windows(4).any(|w| w == b"\r\n\r\n")
}

impl<T: AsyncRead + Unpin> AsyncRead for LimitedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request headers not sent in time")));
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() {
            let new = &buf.filled()[before..];
            if headers_end(&this.tail, new) {
                this.deadline = None;
            } else if !new.is_empty() {
                let mut joined = this.tail.to_vec();
                joined.extend_from_slice(new);
                this.tail.copy_from_slice(&joined[joined.len() - 3..]);
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for LimitedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_end_of_the_headers_is_found_across_reads() {
        assert!(headers_end(&[0; 3], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(headers_end(b"\r\n\r", b"\n"));
        assert!(headers_end(b"x\r\n", b"\r\nbody"));
        assert!(!headers_end(&[0; 3], b"GET / HTTP/1.1\r\nHost: x\r\n"));
    }

    async fn listener(
        total: usize,
        per_source: usize,
        timeout: Duration,
    ) -> (Limited<tokio::net::TcpListener>, SocketAddr) {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        (limited(tcp).with_limits(total, per_source, timeout), addr)
    }

    #[tokio::test]
    async fn a_half_sent_request_is_cut_off_and_a_whole_one_is_not() {
        let (mut l, addr) = listener(8, 8, Duration::from_millis(300)).await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let (mut io, _) = l.accept().await;
        let mut buf = [0u8; 256];
        let n = io.read(&mut buf).await.unwrap();
        assert!(n > 0);
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let mut whole = tokio::net::TcpStream::connect(addr).await.unwrap();
        whole.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let (mut io, _) = l.accept().await;
        let _ = io.read(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        whole.write_all(b"more").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 4, "past the headers there is no deadline");
    }

    #[tokio::test]
    async fn one_address_gets_its_share_and_the_rest_wait_in_the_backlog() {
        let (mut l, addr) = listener(3, 2, Duration::from_secs(10)).await;
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (first, _) = l.accept().await;
        let (_second, _) = l.accept().await;
        // The third from 127.0.0.1 is over its share: closed; the accept goes on waiting.
        let third = tokio::time::timeout(Duration::from_millis(300), l.accept()).await;
        assert!(third.is_err(), "no third connection from one address");
        let mut buf = [0u8; 1];
        assert_eq!(c.read(&mut buf).await.unwrap(), 0, "the refused one is closed");
        drop(first);
        let _d = tokio::net::TcpStream::connect(addr).await.unwrap();
        let again = tokio::time::timeout(Duration::from_secs(2), l.accept()).await;
        assert!(again.is_ok(), "a freed share is handed out again");
    }
}
