//! A transfer of any kind, and what every kind answers the same way: who takes part,
//! when it wants time, and whether bulk bytes may arrive for it.

use super::download::Download;
use super::receive::Receiving;
use super::recv::Incoming;
use super::send::Outgoing;
use super::serve::Serving;
use crate::core::{Millis, PeerId};

/// A transfer in progress: one of ours, one we receive, a multi-source download, or a
/// shared file we serve to a downloader.
#[derive(Debug)]
pub(super) enum Transfer {
    Send(Outgoing),
    Receive(Incoming),
    Download(Download),
    Serve(Serving),
}

impl Transfer {
    /// Whether `peer` takes part (as the other side, or one of the holders).
    pub(super) fn involves(&self, peer: &PeerId) -> bool {
        match self {
            Transfer::Send(t) => t.peer == *peer,
            Transfer::Receive(t) => t.peer == *peer,
            Transfer::Download(d) => d.involves(peer),
            Transfer::Serve(s) => s.peer == *peer,
        }
    }

    /// When a paused transfer gives up on its peer.
    pub(super) fn paused_until(&self) -> Option<Millis> {
        match self {
            Transfer::Send(t) => t.paused_until(),
            Transfer::Receive(t) => t.paused_until(),
            Transfer::Download(d) => d.paused_until(),
            Transfer::Serve(_) => None,
        }
    }

    /// When this transfer wants `handle_timeout`: the end of a pause, or a download's
    /// check for a stalled holder.
    pub(super) fn deadline(&self) -> Option<Millis> {
        match self {
            Transfer::Download(d) => [d.paused_until(), d.stall_check()].into_iter().flatten().min(),
            other => other.paused_until(),
        }
    }

    pub(super) fn receiving(&mut self) -> Option<&mut dyn Receiving> {
        match self {
            Transfer::Receive(t) => Some(t),
            Transfer::Download(d) => Some(d),
            Transfer::Send(_) | Transfer::Serve(_) => None,
        }
    }
}
