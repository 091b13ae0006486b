//! The one mapping from typed client errors ([`ErrorCode`]) to HTTP statuses: every HTTP answer
//! about a client error (REST history, the server API, upgrade parameters) takes its status here.

use crate::types::ErrorCode;

/// The HTTP status answered for a client error of `code`.
pub(crate) fn of(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::BadJson
        | ErrorCode::UnknownType
        | ErrorCode::MissingField
        | ErrorCode::InvalidRoom
        | ErrorCode::InvalidNick
        | ErrorCode::EmptyMessage
        | ErrorCode::InvalidClientId
        | ErrorCode::BinaryNotSupported
        | ErrorCode::InvalidParameter => 400,
        ErrorCode::Unauthorized | ErrorCode::TokenExpired | ErrorCode::TokenRevoked => 401,
        ErrorCode::Forbidden | ErrorCode::Muted | ErrorCode::TokenUserMismatch => 403,
        ErrorCode::NotFound => 404,
        ErrorCode::NotJoined | ErrorCode::AlreadyJoined | ErrorCode::TooManyRooms => 409,
        ErrorCode::MessageTooLarge => 413,
        ErrorCode::ContentBlocked | ErrorCode::RepeatedContent => 422,
        ErrorCode::RateLimited => 429,
        ErrorCode::HistoryUnavailable | ErrorCode::Unavailable => 503,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_a_client_or_availability_status() {
        for code in ErrorCode::ALL {
            let status = of(code);
            assert!((400..500).contains(&status) || status == 503, "{}: {status}", code.as_str());
        }
        assert_eq!(of(ErrorCode::MissingField), 400);
        assert_eq!(of(ErrorCode::MessageTooLarge), 413);
        assert_eq!(of(ErrorCode::Unavailable), 503);
        assert_eq!(of(ErrorCode::RateLimited), 429);
        assert_eq!(of(ErrorCode::Muted), 403);
        assert_eq!(of(ErrorCode::ContentBlocked), 422);
    }
}
