//! Shared data types, the bottom layer: what several layers pass to each other and nothing else
//! (no behaviour beyond constructors and accessors, no I/O, no threads).
//!
//! [`Event`] and [`Sequenced`] (the room's ordered log, see `event.rs`), [`Format`] (a connection's wire format), [`ErrorCode`] and
//! [`ClientError`] (the stable error codes clients receive) and [`ConnRef`] (a connection named
//! from another thread).

mod client_error;
mod conn_ref;
mod event;
mod format;

pub use client_error::{ClientError, ErrorCode};
pub use conn_ref::{ConnRef, IdWaiter};
pub use event::{Delete, Edit, Event, EventKind, Message, Origin, Read, Revision, Sequenced, Transient};
pub use format::Format;
