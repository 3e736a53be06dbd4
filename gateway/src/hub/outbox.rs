//! A fan connection's outbox: the frames the hub queued for it, bounded.
//!
//! **Capacity.** At most [`limits::WS_OUTBOX_FRAMES_MAX`] frames; a
//! connection that falls that far behind is closed (the outbox refuses
//! every later frame) and resynchronises when the fan reconnects with its
//! queue token.
//!
//! **Wake-ups.** The hub queues every push already at hand before waking
//! any connection ([`Wakes`]), so pushes released together reach a fan in
//! one write; a connection with [`DEFERRED_FRAMES_MAX`] frames queued is
//! woken at once, batch or not.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use onsale_schema::limits;
use tokio::sync::Notify;

/// Frames the hub queues for one connection before waking it anyway,
/// batch or not (far below the outbox's limit).
pub const DEFERRED_FRAMES_MAX: usize = 32;

/// Frames waiting to be written to one connection.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<Bytes>>,
    notify: Notify,
    closed: AtomicBool,
    recheck: AtomicBool,
    /// Frames were queued by the hub and the connection is not woken yet.
    wake_due: AtomicBool,
}

impl Outbox {
    /// Queue a frame and wake the connection. False (and the outbox
    /// closes) when the connection is too far behind; false when it is
    /// closed already.
    pub fn push(&self, frame: Bytes) -> bool {
        let queued = self.enqueue(frame).is_some();
        if queued {
            self.notify.notify_one();
        }
        queued
    }

    /// Queue a frame without waking the connection. True when the caller
    /// must [`wake`](Self::wake) it later (the first frame since the last
    /// wake). A connection with [`DEFERRED_FRAMES_MAX`] frames queued is
    /// woken at once: it must drain long before its outbox overflows.
    fn push_deferred(&self, frame: Bytes) -> bool {
        let Some(queued) = self.enqueue(frame) else {
            return false;
        };
        if queued >= DEFERRED_FRAMES_MAX {
            self.notify.notify_one();
        }
        !self.wake_due.swap(true, Ordering::AcqRel)
    }

    fn wake(&self) {
        self.wake_due.store(false, Ordering::Release);
        self.notify.notify_one();
    }

    /// Queue a frame; how many are queued now, or `None` if refused.
    fn enqueue(&self, frame: Bytes) -> Option<usize> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = self.queue.lock().expect("not poisoned");
        if queue.len() >= limits::WS_OUTBOX_FRAMES_MAX {
            drop(queue);
            metrics::counter!("onsale_ws_slow_closed_total").increment(1);
            self.close();
            return None;
        }
        queue.push_back(frame);
        Some(queue.len())
    }

    /// Take every queued frame.
    pub fn take(&self) -> VecDeque<Bytes> {
        std::mem::take(&mut *self.queue.lock().expect("not poisoned"))
    }

    /// Wait until a frame is queued or the outbox closes.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Ask the connection to reread its fan's status from the event.
    pub fn request_recheck(&self) {
        self.recheck.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Whether a recheck was asked for (and clear the request).
    pub fn take_recheck(&self) -> bool {
        self.recheck.swap(false, Ordering::AcqRel)
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Connections the hub queued frames for, woken together once the pushes
/// at hand are all queued. Pushes released together (an event opening its
/// sale says "open" and "admitted through P" at once) then reach each fan
/// in one write: woken after the first push, a connection would write it
/// alone while the hub still queued the second.
#[derive(Debug, Default)]
pub(super) struct Wakes(RefCell<Vec<Arc<Outbox>>>);

impl Wakes {
    pub(super) fn send(&self, outbox: &Arc<Outbox>, frame: Bytes) {
        if outbox.push_deferred(frame) {
            self.0.borrow_mut().push(Arc::clone(outbox));
        }
    }

    pub(super) fn wake_all(&self) {
        for outbox in self.0.borrow_mut().drain(..) {
            outbox.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn frames_queued_together_wake_the_connection_once_after_the_last() {
        let outbox = Arc::new(Outbox::default());
        let wakes = Wakes::default();
        wakes.send(&outbox, Bytes::from_static(b"sale open"));
        wakes.send(&outbox, Bytes::from_static(b"admitted"));
        assert_eq!(wakes.0.borrow().len(), 1, "one wake for both frames");
        // Not woken yet: the connection would write the first frame alone.
        let early = tokio::time::timeout(Duration::from_millis(20), outbox.ready()).await;
        assert!(early.is_err());
        wakes.wake_all();
        outbox.ready().await;
        assert_eq!(outbox.take(), [&b"sale open"[..], &b"admitted"[..]]);
        // The next frame asks for a wake again.
        wakes.send(&outbox, Bytes::from_static(b"position"));
        assert_eq!(wakes.0.borrow().len(), 1);
    }

    #[tokio::test]
    async fn a_connection_sent_many_frames_in_one_batch_is_woken_before_it_overflows() {
        let outbox = Arc::new(Outbox::default());
        let wakes = Wakes::default();
        // 300 seat changes for a section this fan views, all in one batch.
        for _ in 0..300 {
            wakes.send(&outbox, Bytes::from_static(b"seats_changed"));
            if outbox.queue.lock().unwrap().len() >= DEFERRED_FRAMES_MAX {
                // The connection task: woken, it drains.
                tokio::time::timeout(Duration::from_secs(1), outbox.ready())
                    .await
                    .expect("woken before the batch ends");
                outbox.take();
            }
        }
        assert!(
            !outbox.is_closed(),
            "a healthy connection was closed as slow"
        );
        wakes.wake_all();
    }

    #[test]
    fn an_outbox_that_overflows_closes_and_takes_no_more() {
        let outbox = Outbox::default();
        for _ in 0..limits::WS_OUTBOX_FRAMES_MAX {
            assert!(outbox.push(Bytes::from_static(b"x")));
        }
        assert!(!outbox.push(Bytes::from_static(b"one too many")));
        assert!(outbox.is_closed());
        assert!(!outbox.push_deferred(Bytes::from_static(b"after")));
    }
}
