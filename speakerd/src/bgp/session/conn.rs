//! One TCP connection of a peer: its reader task, which only frames bytes (bounded buffer, bounded
//! channel), and its writer task, which owns the write half, sends control messages (OPEN, KEEPALIVE,
//! NOTIFICATION) first and pulls UPDATEs from the Adj-RIB-Out only when the socket takes more, in
//! batches of bounded size. While it waits with nothing to send, the writer lends its socket and
//! encoder to the API call that marks a change (the write-through loan; why, and the other exceptions
//! to one-way data flow: [`super::handle`]).
use super::handle::{Armed, ConnEvent, PeerShared, WriterMsg};
use crate::bgp::fsm::ConnId;
use crate::bgp::rib_out::{self, Encoder};
use crate::bgp::wire;
use bytes::BytesMut;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

/// Bounded queue of control messages per connection. When it is full the socket is not draining and
/// the hold timer on the other side is the judge; we drop the extra keepalive.
pub(super) const CTL_QUEUE: usize = 16;
/// Frames buffered between a reader and the peer task (each ≤ 4096 bytes).
pub(super) const FRAME_QUEUE: usize = 64;

/// A connection as the peer task holds it.
pub(super) struct ConnIo {
    pub(super) ctl: mpsc::Sender<WriterMsg>,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    /// The other addresses of the local address's interface, read when the connection was made: the
    /// next hop of the other family. Reading them (getifaddrs(3), two netlink dumps) at Established
    /// would delay the first UPDATE.
    pub(super) local_others: Vec<IpAddr>,
    pub(super) drain: Option<oneshot::Sender<()>>,
    pub(super) _reader: tokio::task::JoinHandle<()>,
    pub(super) writer: tokio::task::JoinHandle<()>,
}

/// Reads, frames and forwards messages. Framing errors are reported and reading stops; after a drain
/// signal, reads and discards for a short while so that our last NOTIFICATION is not lost to a RST.
pub(super) async fn run_reader(
    mut r: OwnedReadHalf,
    id: ConnId,
    tx: mpsc::Sender<(ConnId, ConnEvent)>,
    mut drain: oneshot::Receiver<()>,
) {
    let mut buf = BytesMut::with_capacity(2 * wire::MAX_MESSAGE_LEN);
    loop {
        loop {
            match wire::frame(&buf, wire::MAX_MESSAGE_LEN) {
                Ok(Some(n)) => {
                    let f = buf.split_to(n);
                    if tx.send((id, ConnEvent::Frame(f))).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send((id, ConnEvent::Bad(e))).await;
                    drain_for(&mut r, Duration::from_secs(3)).await;
                    return;
                }
            }
        }
        buf.reserve(wire::MAX_MESSAGE_LEN);
        tokio::select! {
            _ = &mut drain => {
                drain_for(&mut r, Duration::from_secs(3)).await;
                return;
            }
            res = r.read_buf(&mut buf) => match res {
                Ok(0) => {
                    let _ = tx.send((id, ConnEvent::Closed("end of stream".into()))).await;
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send((id, ConnEvent::Closed(e.to_string()))).await;
                    return;
                }
            },
        }
    }
}

async fn drain_for(r: &mut OwnedReadHalf, d: Duration) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(d, async {
        while let Ok(n) = r.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Owns the write half. Control messages first; UPDATEs pulled from the Adj-RIB-Out between them.
/// While it waits with nothing to send, it lends the socket and encoder to [`PeerShared::changed`].
pub(super) async fn run_writer(
    w: OwnedWriteHalf,
    mut ctl: mpsc::Receiver<WriterMsg>,
    shared: Arc<PeerShared>,
    task: u64,
) {
    static WRITER_IDS: AtomicU64 = AtomicU64::new(1);
    let me = WRITER_IDS.fetch_add(1, Ordering::Relaxed);
    let w = Arc::new(w);
    let mut enc: Option<(Arc<Encoder>, Option<u64>)> = None;
    // Allocated while there is something to send, dropped when the writer goes idle: 1000 idle sessions
    // would otherwise keep 1000 resident buffers of up to 128 KiB.
    let mut batch = BytesMut::new();
    // Bytes of UPDATEs written since the writer was last idle, and the size of the next batch: small
    // after idle, so the first UPDATE leaves at once, doubling while there is more.
    let mut burst = 0usize;
    let mut limit = rib_out::BATCH_FIRST;
    // A control message that woke the writer from its wait, handled at the top like any other.
    let mut woken_by: Option<WriterMsg> = None;
    loop {
        let msg = match woken_by.take() {
            Some(m) => Some(m),
            None => match ctl.try_recv() {
                Ok(m) => Some(m),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => None,
            },
        };
        match msg {
            Some(WriterMsg::Bytes(b)) => {
                if write_all(&w, &b).await.is_err() {
                    break;
                }
                if is_notification(&b) {
                    enc = None; // nothing may follow it (RFC 4271 §4.5)
                }
                continue;
            }
            Some(WriterMsg::StartUpdates(e, epoch)) => {
                enc = Some((Arc::from(e), epoch));
                continue;
            }
            Some(WriterMsg::Close) => break,
            None => {}
        }
        if let Some((e, _)) = &enc {
            batch.clear();
            if batch.capacity() == 0 {
                batch.reserve(128 * 1024);
            }
            let Some(st) = shared.take_batch(e, &mut batch, limit) else { break };
            if !batch.is_empty() {
                if write_all(&w, &batch).await.is_err() {
                    break;
                }
                burst += batch.len();
                limit = rib_out::next_batch_limit(limit);
                shared.with_status(|s| s.updates_sent += st.updates);
                continue;
            }
        }
        batch = BytesMut::new();
        if burst >= 64 << 10 {
            crate::mem::release_freed_memory_later();
        }
        burst = 0;
        limit = rib_out::BATCH_FIRST;
        if let Some((e, Some(epoch))) = &enc {
            shared.arm(Armed { writer: me, task, epoch: *epoch, w: w.clone(), enc: e.clone() });
        }
        // None: the Adj-RIB-Out has work; Some(None): the session task is gone.
        let woken = tokio::select! {
            biased;
            m = ctl.recv() => Some(m),
            _ = shared.rib_notify.notified(), if enc.is_some() => None,
        };
        // The rest of a message the fast path cut goes first.
        let rest = shared.disarm(me);
        if !rest.is_empty() && write_all(&w, &rest).await.is_err() {
            break;
        }
        match woken {
            Some(Some(m)) => woken_by = Some(m),
            Some(None) => break,
            None => {}
        }
    }
    shared.disarm(me);
    if let Ok(mut w) = Arc::try_unwrap(w) {
        let _ = w.shutdown().await;
    }
}

fn is_notification(b: &[u8]) -> bool {
    b.get(18) == Some(&3)
}

/// `write_all` on a write half that the fast path may borrow between writes.
async fn write_all(w: &OwnedWriteHalf, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        w.writable().await?;
        match w.try_write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
