//! Channels between the runtime's threads.
//!
//! [`latest`]: a capacity-1 channel where a new item replaces an unread one
//! (newest wins), so a slow consumer never works through a queue of stale
//! data (capture → inference → motor).

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};

/// Sending half of a capacity-1 channel where a new item replaces an unread one.
pub struct Latest<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl<T> Clone for Latest<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
}

pub fn latest<T>() -> (Latest<T>, Receiver<T>) {
    let (tx, rx) = bounded(1);
    (Latest { tx, rx: rx.clone() }, rx)
}

impl<T> Latest<T> {
    /// Send `item`; returns the unread item it replaced, if any.
    pub fn send(&self, mut item: T) -> Option<T> {
        let mut replaced = None;
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return replaced,
                Err(crossbeam_channel::TrySendError::Full(back)) => {
                    item = back;
                    if let Ok(old) = self.rx.try_recv() {
                        replaced = Some(old);
                    }
                }
                // We hold a receiver ourselves, so the channel cannot disconnect.
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return replaced,
            }
        }
    }
}

/// Drain a receiver without blocking, keeping the newest item.
pub fn try_newest<T>(rx: &Receiver<T>) -> Option<T> {
    let mut newest = None;
    loop {
        match rx.try_recv() {
            Ok(v) => newest = Some(v),
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return newest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_replaces_unread_items() {
        let (tx, rx) = latest();
        assert_eq!(tx.send(1), None);
        assert_eq!(tx.send(2), Some(1));
        assert_eq!(rx.try_recv().ok(), Some(2));
        assert!(rx.try_recv().is_err());
        assert_eq!(tx.send(3), None);
        assert_eq!(try_newest(&rx), Some(3));
    }
}
