//! WebSocket framing (RFC 6455) on top of tungstenite's frame header codec.
//!
//! Sans-IO: [`codec::FrameDecoder`] turns received bytes into [`codec::WsEvent`]s and enforces the
//! RFC's masking, opcode, reserved-bit, control-frame, fragmentation and UTF-8 rules; [`codec`]'s
//! `encode_*` functions build server frames (never masked); [`deflate`] compresses and inflates
//! permessage-deflate payloads (RFC 7692). [`close`] names the close codes we send.
//! The WebSocket session (`session::ws_session`) decodes what the shard read with it; the publish
//! path (`room::hub`) and the session encode server frames with it. It uses nothing else of the
//! crate.

pub mod close;
pub mod codec;
pub mod deflate;
