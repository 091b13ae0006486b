//! The seed text protocol: a chat line is the message as the sender wrote it; a message from a JSON
//! client reaches text clients as `user: content`.

/// Appends the text-format line of a message from `user` (how text members see a JSON client's
/// message, and how history and resume render a stored message for them).
pub(crate) fn write_line(out: &mut Vec<u8>, user: &str, content: &str) {
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(content.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_user_colon_space_content() {
        let mut out = b"kept ".to_vec();
        write_line(&mut out, "Alice", "Hello");
        assert_eq!(out, b"kept Alice: Hello");
    }
}
