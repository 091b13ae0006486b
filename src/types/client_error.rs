//! Error codes sent to clients in `error` frames (and HTTP error bodies). Stable: part of the contract.

/// Everything a client can get wrong that leaves its connection open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    BadJson,
    /// `type` is missing or not one the server knows.
    UnknownType,
    /// A field the command needs is missing or has the wrong type.
    MissingField,
    /// Room name empty, over 64 bytes, or with control characters.
    InvalidRoom,
    /// Nickname empty, over 32 characters, or with control characters.
    InvalidNick,
    /// Message content over `max_message_bytes`.
    MessageTooLarge,
    /// Message content empty.
    EmptyMessage,
    /// `client_id` over 128 bytes.
    InvalidClientId,
    /// Binary frames are not part of the JSON protocol.
    BinaryNotSupported,
    /// The connection is not a member of the room it wrote to.
    NotJoined,
    /// The connection is already in that room.
    AlreadyJoined,
    /// The connection is already in the maximum number of rooms.
    TooManyRooms,
    /// A query parameter or command field is out of range (e.g. a negative or non-numeric id).
    InvalidParameter,
    /// History could not be read (database unavailable or overloaded); retry later.
    HistoryUnavailable,
    /// Over the connection's message or byte rate: the message was dropped; slow down.
    RateLimited,
    /// The token's `rooms` claim does not include the room.
    Forbidden,
    /// The server could not accept the message now (cluster mode: the hand-off to Redis is full);
    /// it was not published; send it again later.
    Unavailable,
    /// An edit or a delete names a message that is not in that room (or is deleted already).
    NotFound,
    /// The sender is muted in the room (server API: `POST /api/rooms/{room}/mute/{user}`): it still
    /// receives the room, but its messages are refused until the mute expires or is lifted.
    Muted,
    /// A `refresh` token does not verify (bad signature, expired, malformed …), or auth is off:
    /// the connection keeps its old token.
    Unauthorized,
    /// The connection's token reached its `exp`: send `refresh` within `--token-grace`, or the
    /// connection is closed with 4001.
    TokenExpired,
    /// A `refresh` token names another user than the connection's: refused, the old token stays.
    TokenUserMismatch,
    /// A `refresh` token was issued before a revocation of its user (server API).
    TokenRevoked,
    /// The content matches the server's blocklist (`--blocklist`, `--blocklist-action reject`): the
    /// message or edit was refused, nothing stored or delivered.
    ContentBlocked,
    /// The user sent the same content more than `--repeat-limit` times within `--repeat-window`
    /// seconds: the message was refused.
    RepeatedContent,
}

impl ErrorCode {
    /// Every code, in [`ErrorCode::index`] order (the `code` label of `roomcast_error_frames_sent_total`).
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::MissingField,
        ErrorCode::InvalidRoom,
        ErrorCode::InvalidNick,
        ErrorCode::MessageTooLarge,
        ErrorCode::EmptyMessage,
        ErrorCode::InvalidClientId,
        ErrorCode::BinaryNotSupported,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::TooManyRooms,
        ErrorCode::InvalidParameter,
        ErrorCode::HistoryUnavailable,
        ErrorCode::RateLimited,
        ErrorCode::Forbidden,
        ErrorCode::Unavailable,
        ErrorCode::NotFound,
        ErrorCode::Muted,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::TokenUserMismatch,
        ErrorCode::TokenRevoked,
        ErrorCode::ContentBlocked,
        ErrorCode::RepeatedContent,
    ];

    /// Number of codes.
    pub const COUNT: usize = Self::ALL.len();

    /// Position in [`ErrorCode::ALL`]; exhaustive, so a new code cannot be forgotten in the metrics.
    pub fn index(self) -> usize {
        match self {
            ErrorCode::BadJson => 0,
            ErrorCode::UnknownType => 1,
            ErrorCode::MissingField => 2,
            ErrorCode::InvalidRoom => 3,
            ErrorCode::InvalidNick => 4,
            ErrorCode::MessageTooLarge => 5,
            ErrorCode::EmptyMessage => 6,
            ErrorCode::InvalidClientId => 7,
            ErrorCode::BinaryNotSupported => 8,
            ErrorCode::NotJoined => 9,
            ErrorCode::AlreadyJoined => 10,
            ErrorCode::TooManyRooms => 11,
            ErrorCode::InvalidParameter => 12,
            ErrorCode::HistoryUnavailable => 13,
            ErrorCode::RateLimited => 14,
            ErrorCode::Forbidden => 15,
            ErrorCode::Unavailable => 16,
            ErrorCode::NotFound => 17,
            ErrorCode::Muted => 18,
            ErrorCode::Unauthorized => 19,
            ErrorCode::TokenExpired => 20,
            ErrorCode::TokenUserMismatch => 21,
            ErrorCode::TokenRevoked => 22,
            ErrorCode::ContentBlocked => 23,
            ErrorCode::RepeatedContent => 24,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::InvalidNick => "invalid_nick",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::EmptyMessage => "empty_message",
            ErrorCode::InvalidClientId => "invalid_client_id",
            ErrorCode::BinaryNotSupported => "binary_not_supported",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::HistoryUnavailable => "history_unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Muted => "muted",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenUserMismatch => "token_user_mismatch",
            ErrorCode::TokenRevoked => "token_revoked",
            ErrorCode::ContentBlocked => "content_blocked",
            ErrorCode::RepeatedContent => "repeated_content",
        }
    }
}

/// A client error with its human-readable explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Sentence for humans, naming the offending value or limit.
    pub message: String,
    /// The `client_id` of the message the error is about, echoed in the `error` frame.
    pub client_id: Option<std::sync::Arc<str>>,
}

impl ClientError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ClientError { code, message: message.into(), client_id: None }
    }

    /// The same error, about the message the client called `client_id`.
    pub fn about(mut self, client_id: Option<std::sync::Arc<str>>) -> Self {
        self.client_id = client_id;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{}", code.as_str());
        }
    }
}
