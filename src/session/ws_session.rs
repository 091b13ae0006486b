//! The WebSocket session: frames in, chat messages and commands out.
//!
//! Text-format connections relay every text (and binary) frame to their one room. JSON connections send
//! commands (`message`, `join`, `leave`, `ping`, `history`, `edit`, `delete`, `typing`, `read`, `dm`,
//! `refresh`) and get events. Client mistakes become
//! `error` frames and the connection stays open; protocol violations close it with the RFC code. Each
//! message is charged to the connection's rate limits before it is parsed. Resume catch-up and
//! `history` replies are paced by the client's reading (`super::catchup`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use slab::Slab;

use super::amend::{self, Amendment};
use super::catchup;
use super::ctx::ShardCtx;
use super::gate;
use super::history::{self, MAX_PAGE, PageRequest};
use super::membership::{self, Entered};
use super::own;
use super::reads;
use super::screen::{author, screen};
use super::send::{close_session, send_error, send_frame, text_frame};
use super::state::{Conn, Membership, PendingJoined, Phase, TYPING_EVERY};
use super::token_life;
use crate::config::Config;
use crate::limits::throttle::Verdict;
use crate::metrics::CloseReason;
use crate::moderation::Kind;
use crate::protocol::json::{self, Command, MAX_CLIENT_ID_BYTES, WelcomeLimits};
use crate::protocol::{dm, names};
use crate::room::hub::RoomRef;
use crate::types::{ClientError, ConnRef, ErrorCode, Event, Format, Origin, Transient};
use crate::ws::close;
use crate::ws::codec::{self, Decoded, MessageKind, WsError, WsEvent};

/// The limits announced in `welcome`.
pub(crate) fn limits(cfg: &Config) -> WelcomeLimits {
    WelcomeLimits { max_message_bytes: cfg.max_message, max_rooms: cfg.max_rooms_per_conn, max_history_page: MAX_PAGE }
}

/// Decodes and handles every complete frame in the connection's buffered input plus `data`.
pub(crate) fn on_input(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, data: &mut [u8]) {
    // One clock read per read batch serves the rate limits and the liveness clock of every frame in it.
    let now = Instant::now();
    if conn.inbuf.is_empty() {
        let consumed = decode_frames(ctx, conn, key, data, now);
        if consumed < data.len() && matches!(conn.phase, Phase::Ws(_)) {
            conn.inbuf.extend_from_slice(&data[consumed..]);
        }
    } else {
        let mut buf = std::mem::take(&mut conn.inbuf);
        buf.extend_from_slice(data);
        let consumed = decode_frames(ctx, conn, key, &mut buf, now);
        if matches!(conn.phase, Phase::Ws(_)) && consumed < buf.len() {
            buf.drain(..consumed);
            conn.inbuf = buf;
        }
    }
}

/// Decodes frames from `data` until it runs out or the connection closes; returns bytes consumed.
fn decode_frames(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, data: &mut [u8], now: Instant) -> usize {
    let Phase::Ws(ws) = &mut conn.phase else { return data.len() };
    if ws.welcome.is_some() {
        // Frames sent right after the handshake wait for `welcome` (`super::direct`).
        return 0;
    }
    let mut decoder = std::mem::take(&mut ws.decoder);
    // A deflate connection borrows the shard's one inflater for this read batch.
    let mut inflater = ws.deflate.map(|_| ctx.inflater.take().unwrap_or_default());
    // JSON content may arrive escaped (up to 6 bytes per content byte); its limit is checked unescaped.
    let max_frame = match ws.format {
        Format::Json => ctx.cfg.max_json_frame_bytes(),
        Format::Text => ctx.cfg.max_frame_bytes(),
    };
    let mut at = 0;
    while matches!(conn.phase, Phase::Ws(_)) && at < data.len() {
        // Backpressure per frame, not per read: one read can carry thousands of small messages,
        // more than the store queue's reserve. The rest waits in `inbuf` (see `wants_input`).
        if at > 0 && ctx.pause_before_frame() {
            break;
        }
        match decoder.decode_with(&mut data[at..], max_frame, inflater.as_deref_mut()) {
            Ok(Decoded::Incomplete) => break,
            Ok(Decoded::Frame { consumed, event }) => {
                at += consumed;
                if let Some(event) = event {
                    on_event(ctx, conn, key, event, now);
                }
            }
            Err(err) => {
                match err {
                    WsError::BadDeflate(_) => ctx.metrics.inflate_failures[0].inc(),
                    WsError::InflatedTooBig { .. } => ctx.metrics.inflate_failures[1].inc(),
                    _ => {}
                }
                tracing::debug!(shard = ctx.shard, key, peer = %conn.peer, %err, "protocol violation");
                close_session(ctx, conn, key, err.close_code(), &err.to_string(), false, CloseReason::ProtocolError);
                ctx.put_inflater(inflater);
                return data.len();
            }
        }
    }
    decoder.finish_message();
    ctx.put_inflater(inflater);
    if let Phase::Ws(ws) = &mut conn.phase {
        ws.decoder = decoder;
        if at > 0 {
            // A complete frame, whatever it was, shows the client is alive.
            ws.limits.seen(now);
        }
    }
    at
}

fn on_event(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, event: WsEvent<'_>, now: Instant) {
    let Phase::Ws(ws) = &conn.phase else { return };
    if ws.limits.throttle.closing() {
        // Being closed for flooding (see `admit`): nothing it sends is handled any more.
        return;
    }
    // Every data frame and ping is charged before it is parsed; a chat message also to the message
    // bucket: here when the format says so, in `on_command` for a JSON `message`.
    let (charged, chat) = match &event {
        WsEvent::Message(_, payload) => (Some(payload.len()), ws.format == Format::Text),
        WsEvent::Ping(payload) => (Some(payload.len()), false),
        WsEvent::Pong | WsEvent::Close(_) => (None, false),
    };
    if let Some(len) = charged
        && !admit(ctx, conn, key, Charge::Frame { now, len })
    {
        return;
    }
    if chat && !admit(ctx, conn, key, Charge::Message) {
        return;
    }
    match event {
        WsEvent::Message(kind, payload) => on_message(ctx, conn, key, kind, payload),
        WsEvent::Ping(payload) => {
            send_frame(ctx, conn, key, Bytes::from(codec::encode_frame(codec::PONG, payload)));
        }
        WsEvent::Pong => {}
        WsEvent::Close(code) => {
            // Echo the peer's code (RFC 6455 §5.5.1); an empty close gets an empty-reason 1000.
            close_session(ctx, conn, key, code.unwrap_or(close::NORMAL), "", false, CloseReason::Normal);
        }
    }
}

fn on_message(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, kind: MessageKind, payload: &mut [u8]) {
    let Phase::Ws(ws) = &conn.phase else { return };
    let max = ctx.cfg.max_message;
    match (ws.format, kind) {
        (Format::Text, _) if payload.len() > max => {
            let err = too_large(payload.len(), max);
            send_error(ctx, conn, key, &err);
        }
        (Format::Text, MessageKind::Text) => {
            let Some(membership) = ws.rooms.first() else { return };
            if let Err(err) = not_muted(ctx, &membership.room.name, &ws.user) {
                return send_error(ctx, conn, key, &err);
            }
            // The codec validated the UTF-8 of text messages.
            let content = std::str::from_utf8(payload).unwrap_or_default();
            let content =
                match screen(ctx, author(ctx, &ws.user, conn.serial), &membership.room.name, content, Kind::Message) {
                    Ok(content) => content,
                    Err(err) => return send_error(ctx, conn, key, &err),
                };
            let event = Event::message(Arc::clone(&ws.user), Arc::from(&*content));
            let origin = Origin { format: Format::Text, client_id: None };
            let result =
                ctx.hub.publish(RoomRef::Joined(&membership.room), event, origin, reply_to(ctx, conn.serial, key));
            match result {
                Ok(_) => ctx.metrics.messages_received.inc(),
                Err(err) => send_error(ctx, conn, key, &err),
            }
        }
        (Format::Text, MessageKind::Binary) => {
            if let Some(membership) = ws.rooms.first() {
                ctx.hub.relay(&membership.room, Transient::Binary(Bytes::copy_from_slice(payload)));
                ctx.metrics.binary_received.inc();
            }
        }
        (Format::Json, MessageKind::Binary) => {
            let err = ClientError::new(ErrorCode::BinaryNotSupported, "the JSON format takes text frames only");
            send_error(ctx, conn, key, &err);
        }
        (Format::Json, MessageKind::Text) => {
            let result = match ctx.parser.parse(payload) {
                Ok(command) => on_command(ctx, conn, key, command),
                Err(err) => Err(err),
            };
            if let Err(err) = result {
                send_error(ctx, conn, key, &err);
            }
        }
    }
}

/// Where a refusal of this connection's message that comes after it left the shard goes (cluster
/// mode: Redis's per-user rate limit).
fn reply_to(ctx: &ShardCtx, conn_serial: u64, key: usize) -> Option<ConnRef> {
    Some(ConnRef { shard: ctx.shard, key, serial: conn_serial })
}

fn not_muted(ctx: &ShardCtx, room: &str, user: &str) -> Result<(), ClientError> {
    ctx.not_muted(room, user)
}

fn too_large(len: usize, max: usize) -> ClientError {
    ClientError::new(ErrorCode::MessageTooLarge, format!("message is {len} bytes; the limit is {max}"))
}

fn on_command(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, command: Command<'_>) -> Result<(), ClientError> {
    match command {
        Command::Message { room, content, client_id } => {
            // The frame was charged before parsing; a chat message costs a message token too.
            if !admit(ctx, conn, key, Charge::Message) {
                return Ok(());
            }
            post(ctx, conn, key, &room, Content::Unscreened(&content), client_id.as_deref())
        }
        Command::Join { room, since, epoch } => on_join(ctx, conn, key, &room, since, epoch.as_deref()),
        Command::Leave { room } => on_leave(ctx, conn, key, &room),
        Command::Ping => {
            send_frame(ctx, conn, key, text_frame(&json::pong()));
            Ok(())
        }
        Command::Typing { room } => on_typing(ctx, conn, key, &room),
        Command::Read { room, id } => reads::on_read(ctx, conn, key, &room, id),
        Command::Dm { to, content, client_id } => {
            if !admit(ctx, conn, key, Charge::Message) {
                return Ok(());
            }
            let Phase::Ws(ws) = &conn.phase else { return Ok(()) };
            let room = dm::room_of(&ws.user, &to)?;
            // Screened before the conversation is opened: a refused message tells the other user nothing.
            let content = screen(ctx, author(ctx, &ws.user, conn.serial), &room, &content, Kind::Message)
                .map_err(|err| err.about(client_id.as_deref().map(Arc::from)))?;
            if !ws.rooms.iter().any(|m| *m.room.name == *room) {
                on_join(ctx, conn, key, &room, None, None)?;
                super::direct::opened(ctx, names::validate_nick(&to)?, &room);
            }
            post(ctx, conn, key, &room, Content::Screened(&content), client_id.as_deref())
        }
        Command::History { room, before_id, after_id, limit } => {
            let Phase::Ws(ws) = &conn.phase else { return Ok(()) };
            names::validate_room(&room)?;
            gate::may_use(&ws.limits.grant, &ws.user, &room)?;
            let query = history::query(&room, PageRequest { before_id, after_id, limit })?;
            catchup::request_history(ctx, conn, key, query, Arc::from(&*room))
        }
        Command::Edit { room, id, content, client_id } => {
            // An edit costs what a message costs.
            if !admit(ctx, conn, key, Charge::Message) {
                return Ok(());
            }
            amend::request(ctx, conn, key, &room, id, Amendment::Edit(&content), client_id.as_deref())
        }
        Command::Delete { room, id, client_id } => {
            amend::request(ctx, conn, key, &room, id, Amendment::Delete, client_id.as_deref())
        }
        Command::Refresh { token } => token_life::on_refresh(ctx, conn, key, &token),
    }
}

/// A message's content, and whether moderation has seen it yet (`super::screen`: exactly once).
#[derive(Debug, Clone, Copy)]
enum Content<'a> {
    /// Not yet: [`post`] screens it.
    Unscreened(&'a str),
    /// Already (a `dm`, screened before its conversation is opened).
    Screened(&'a str),
}

/// A JSON `message` (or `dm`): checked, then published to the room (which the sender must have joined).
fn post(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    room: &str,
    content: Content<'_>,
    client_id: Option<&str>,
) -> Result<(), ClientError> {
    let Phase::Ws(ws) = &conn.phase else { return Ok(()) };
    let unscreened = matches!(content, Content::Unscreened(_));
    let (Content::Unscreened(content) | Content::Screened(content)) = content;
    names::validate_room(room)?;
    gate::may_use(&ws.limits.grant, &ws.user, room)?;
    if content.is_empty() {
        return Err(ClientError::new(ErrorCode::EmptyMessage, "content must not be empty"));
    }
    if content.len() > ctx.cfg.max_message {
        return Err(too_large(content.len(), ctx.cfg.max_message));
    }
    if client_id.is_some_and(|c| c.len() > MAX_CLIENT_ID_BYTES) {
        return Err(ClientError::new(
            ErrorCode::InvalidClientId,
            format!("client_id is longer than {MAX_CLIENT_ID_BYTES} bytes"),
        ));
    }
    let membership = ws.rooms.iter().find(|m| *m.room.name == *room).ok_or_else(|| not_joined(room))?;
    not_muted(ctx, room, &ws.user).map_err(|err| err.about(client_id.map(Arc::from)))?;
    let content = if unscreened {
        screen(ctx, author(ctx, &ws.user, conn.serial), room, content, Kind::Message)
            .map_err(|err| err.about(client_id.map(Arc::from)))?
    } else {
        Cow::Borrowed(content)
    };
    let event = Event::message(Arc::clone(&ws.user), Arc::from(&*content));
    let origin = Origin { format: Format::Json, client_id: client_id.map(Arc::from) };
    let room_id = membership.room.id;
    let id = ctx.hub.publish(RoomRef::Joined(&membership.room), event, origin, reply_to(ctx, conn.serial, key))?;
    ctx.metrics.messages_received.inc();
    if let Some(id) = id
        && own::applies(ctx)
        && let Phase::Ws(ws) = &mut conn.phase
    {
        ws.own.remember(room_id, id);
    }
    Ok(())
}

fn on_join(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    room: &str,
    since: Option<u64>,
    epoch: Option<&str>,
) -> Result<(), ClientError> {
    let Phase::Ws(ws) = &conn.phase else { return Ok(()) };
    names::validate_room(room)?;
    gate::may_use(&ws.limits.grant, &ws.user, room)?;
    if ws.rooms.iter().any(|m| *m.room.name == *room) {
        return Err(ClientError::new(ErrorCode::AlreadyJoined, format!("already in room {room:?}")));
    }
    if ws.rooms.len() >= ctx.cfg.max_rooms_per_conn {
        return Err(ClientError::new(
            ErrorCode::TooManyRooms,
            format!("a connection may be in at most {} rooms", ctx.cfg.max_rooms_per_conn),
        ));
    }
    join(ctx, conn, key, room, since, epoch);
    Ok(())
}

fn on_leave(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room: &str) -> Result<(), ClientError> {
    let Phase::Ws(ws) = &mut conn.phase else { return Ok(()) };
    let Some(index) = ws.rooms.iter().position(|m| *m.room.name == *room) else {
        return Err(not_joined(room));
    };
    let membership = ws.take_membership(index);
    let (variant, user) = (ws.variant(), Arc::clone(&ws.user));
    membership::leave(ctx, key, variant, &user, membership);
    send_frame(ctx, conn, key, text_frame(&json::left(room)));
    Ok(())
}

/// `typing`: told to the room's other members, at most once per [`TYPING_EVERY`] per connection
/// and room; the rest are dropped without an answer (a client may send one per key press: its frame
/// was charged, but only a forwarded one costs a chat message's token too).
fn on_typing(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room: &str) -> Result<(), ClientError> {
    names::validate_room(room)?;
    let now = Instant::now();
    let Phase::Ws(ws) = &conn.phase else { return Ok(()) };
    let membership = ws.rooms.iter().find(|m| *m.room.name == *room).ok_or_else(|| not_joined(room))?;
    if membership.typing_at.is_some_and(|at| now.duration_since(at) < TYPING_EVERY) {
        return Ok(());
    }
    if not_muted(ctx, room, &ws.user).is_err() {
        // A muted user's typing is not shown either (dropped like a throttled one).
        return Ok(());
    }
    if !admit(ctx, conn, key, Charge::Message) {
        return Ok(());
    }
    let serial = conn.serial;
    let Phase::Ws(ws) = &mut conn.phase else { return Ok(()) };
    let user = Arc::clone(&ws.user);
    let Some(membership) = ws.rooms.iter_mut().find(|m| *m.room.name == *room) else { return Ok(()) };
    membership.typing_at = Some(now);
    let from = Some(ConnRef { shard: ctx.shard, key, serial });
    ctx.hub.relay(&membership.room, Transient::Typing { user, from });
    Ok(())
}

fn not_joined(room: &str) -> ClientError {
    ClientError::new(ErrorCode::NotJoined, format!("join room {room:?} before posting to or leaving it"))
}

/// Adds the connection to `room`; a JSON member gets `joined`, and with `since` first catches up.
/// A `since` from another `epoch` than the server's is not applied: `joined` says `reset`.
pub(crate) fn join(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    room: &str,
    since: Option<u64>,
    epoch: Option<&str>,
) {
    let reset = since.is_some() && epoch.is_some_and(|e| e != &*ctx.epoch);
    let since = since.filter(|_| !reset);
    let Phase::Ws(ws) = &mut conn.phase else { return };
    let (format, variant, user) = (ws.format, ws.variant(), Arc::clone(&ws.user));
    let persisted = ctx.store.is_some();
    // `joined` says the user's read state when there can be one; it waits for the store only when a
    // marker may be stored (live frames are held meanwhile, like a resume's).
    let read_known = format == Format::Json && reads::has_read_state(ctx, &user);
    let waits = read_known && reads::may_have_marker(ctx);
    // A JSON member joining with `since` below the room's last id resumes: live frames wait.
    let resumes = |last_id: u64| since.is_some_and(|s| format == Format::Json && s < last_id && persisted);
    let Entered { joined, cluster_members } =
        membership::enter(ctx, key, variant, &user, room, |last_id| waits || resumes(last_id));
    let resume_from = since.filter(|_| resumes(joined.last_id));
    let catch_up = resume_from.map(|since| catchup::catch_up(since, joined.last_id));
    let (members, member_count) = match cluster_members {
        Some(list) => list,
        None => (joined.member_names, joined.member_count),
    };
    let pending = PendingJoined { members, member_count, last_id: joined.last_id, reset };
    let room_id = joined.room.id;
    let mut membership =
        Membership { room: joined.room, catch_up, typing_at: None, read_upto: 0, pending_joined: None };
    if ws.rooms.is_empty() {
        // Most connections are in one room (a text connection always): one slot, not the four a
        // first push would allocate (216 bytes more per idle connection).
        ws.rooms.reserve_exact(1);
    }
    if format != Format::Json {
        ws.rooms.push(membership);
        return;
    }
    if waits {
        membership.pending_joined = Some(Box::new(pending));
        let room = Arc::clone(&membership.room.name);
        ws.rooms.push(membership);
        reads::ask(ctx, conn, key, room);
        return;
    }
    ws.rooms.push(membership);
    let read = read_known.then_some(json::ReadState { read_id: 0, unread: None });
    reads::send_joined(ctx, conn, key, room, &pending, read);
    if resume_from.is_some() {
        catchup::start(ctx, conn, key, room_id);
    }
}

/// What [`admit`] charges to the connection's throttle.
#[derive(Debug, Clone, Copy)]
enum Charge {
    /// A data frame or ping of `len` payload bytes, read at `now` (before it is parsed).
    Frame { now: Instant, len: usize },
    /// A chat message (whose frame was charged just before).
    Message,
}

/// Charges `charge` to the rate limits; `false` when the frame or message must be dropped (it was
/// answered `rate_limited`, or the connection is now being closed for flooding).
fn admit(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, charge: Charge) -> bool {
    let rates = ctx.gate.rates;
    if !rates.enabled() {
        return true;
    }
    let Phase::Ws(state) = &mut conn.phase else { return false };
    let verdict = match charge {
        Charge::Frame { now, len } => state.limits.throttle.admit_frame(&rates, now, len),
        Charge::Message => state.limits.throttle.admit_message(&rates),
    };
    match verdict {
        Verdict::Allow => true,
        Verdict::Refuse => {
            let message = match charge {
                Charge::Frame { .. } => format!(
                    "over the rate limit ({} frames/s, commands and pings included; {} bytes/s); the frame was dropped",
                    rates.frames_per_sec, rates.bytes_per_sec
                ),
                Charge::Message => format!(
                    "over the message rate limit ({} messages/s); the message was dropped",
                    rates.messages_per_sec
                ),
            };
            send_error(ctx, conn, key, &ClientError::new(ErrorCode::RateLimited, message));
            false
        }
        Verdict::Close => {
            tracing::info!(shard = ctx.shard, key, peer = %conn.peer, "closing a client that keeps flooding");
            // Not closed here: the messages it sent before are in the shard's inbox, on their way
            // back to it as echoes, and a closed session is no longer their member. It takes no more
            // input from now on (`Throttle::closing`) and is closed with 1008 once the inbox has been
            // drained past them (`close_flooders`); the queued warnings go first and tell it why.
            ctx.close_after_inbox(key, conn.serial);
            false
        }
    }
}

/// Closes, with 1008, the connections that kept flooding once the shard has handled every inbox
/// message that was waiting when each was condemned (so the echoes of the messages they sent before
/// are queued ahead of the close). Called by the shard after each inbox drain.
pub(crate) fn close_flooders(ctx: &mut ShardCtx, conns: &mut Slab<Conn>) {
    for (key, serial) in ctx.due_closes() {
        if let Some(conn) = conns.get_mut(key)
            && conn.serial == serial
        {
            close_session(
                ctx,
                conn,
                key,
                close::POLICY_VIOLATION,
                "rate limit exceeded repeatedly",
                false,
                CloseReason::RateLimit,
            );
        }
    }
}
