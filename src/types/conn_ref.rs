//! [`ConnRef`]: how a thread other than a connection's shard names that connection; [`IdWaiter`]: a
//! request on such a connection waiting for an event's id.

/// One connection, named from outside its shard: the shard it lives on, its slab key there and its
/// serial (slab keys are reused; the serial is unique, so a reply for a connection that closed
/// meanwhile is recognised and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    /// Index of the shard the connection lives on.
    pub shard: usize,
    /// Slab key on that shard.
    pub key: usize,
    /// Serial of the connection (guards against a reused slab key).
    pub serial: u64,
}

/// A request waiting for an event's id (the server API in cluster mode): its HTTP connection and the
/// event's place in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdWaiter {
    /// The HTTP connection.
    pub conn: ConnRef,
    /// The event's index in the request (0 for a single message).
    pub index: u32,
}
