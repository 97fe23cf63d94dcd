//! The event bus: every subscriber gets every event.

use shim_proto::v1::Event;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tokio_stream::StreamExt;

use crate::error::ShimError;
use crate::shim::EventStream;

/// How many events a subscriber may fall behind by default before its stream
/// is ended with an error.
pub const DEFAULT_EVENT_BUFFER: usize = 1024;

/// A broadcast bus of shim events.
///
/// Each subscriber has its own view of a bounded ring: a slow subscriber never
/// slows the publisher or the others. One that falls more than the capacity
/// behind gets an [`ShimError::Unavailable`] item and its stream ends, so it
/// knows it missed events and can resync with `State`. Publishing with no
/// subscriber drops the event; nothing blocks.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(DEFAULT_EVENT_BUFFER)
    }
}

impl EventBus {
    /// A bus on which a subscriber may lag by up to `capacity` events.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Sends an event to every current subscriber.
    pub fn publish(&self, event: Event) {
        tracing::debug!(id = %event.id, r#type = event.r#type, pid = event.pid, exit_status = event.exit_status, "event");
        // An error only means there is no subscriber right now.
        let _ = self.tx.send(event);
    }

    /// Number of live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// A stream of every event published from now on.
    pub fn subscribe(&self) -> EventStream {
        let stream = BroadcastStream::new(self.tx.subscribe()).map(|item| {
            item.map_err(|BroadcastStreamRecvError::Lagged(n)| {
                ShimError::Unavailable(format!(
                    "event subscriber fell behind and missed {n} events; subscribe again and resync with state"
                ))
            })
        });
        // End the stream after the first error so the subscriber cannot
        // mistake a gap for a complete history.
        let mut failed = false;
        Box::pin(stream.take_while(move |item| {
            if failed {
                return false;
            }
            failed = item.is_err();
            true
        }))
    }
}
