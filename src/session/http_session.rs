//! The HTTP session: parse request heads, answer them, or upgrade to WebSocket.
//!
//! Plain requests are served keep-alive, pipelined requests in order. Memory per connection is bounded
//! by configuration whatever the client does: the next request is parsed only while the connection's
//! queued output is under [`output_mark`] (16 KiB, or `--max-outbuf` if smaller) and no history read
//! is outstanding, so a client that pipelines requests and never reads holds at most the mark plus one
//! response (a single response may be larger than the mark or `--max-outbuf`, e.g. a history page:
//! the bound applies to the output already pending when a request would be taken). While a request
//! waits, the shard does not read the socket (`Conn::read_blocked`), so unparsed input is bounded by
//! one read (64 KiB) plus one partial head (`--max-header-bytes`) and TCP pushes back on the sender;
//! when the output drains the shard serves the buffered requests and reads again. Every refusal is a
//! status with a JSON error body.
//!
//! Bodies: only `/api/` requests (`api_session`) read one; it is bounded per route, checked on the
//! head before a byte of it is buffered beyond one read (413), and waits in the input buffer until
//! complete. Any other method than GET/HEAD elsewhere is 405 with `Allow: GET, HEAD`; a request
//! refused with a body unread closes the connection after the answer.

use std::sync::Arc;
use std::time::Instant;

use super::ctx::ShardCtx;
use super::gate;
use super::gate::AccessError;
use super::history::{self, PageRequest};
use super::state::{Conn, PendingWelcome, Phase, TokenLife, WsState};
use super::{api_session, ops, token_life, ws_session};
use crate::api::registry::ConnEntry;
use crate::api::route as api_route;
use crate::bus::HistoryPurpose;
use crate::http::percent::{PercentError, query_pairs};
use crate::http::request::{self, Method, Request};
use crate::http::response::Response;
use crate::http::route::{Route, route};
use crate::http::upgrade;
use crate::limits::client::ClientLimits;
use crate::metrics::CloseReason;
use crate::protocol::{json, names};
use crate::static_files;
use crate::store::{HistoryPage, HistoryQuery, StoreError};
use crate::types::Format;
use crate::types::{ClientError, ConnRef, ErrorCode};

/// Output queued on an HTTP connection above which no further request is parsed.
const PIPELINE_MARK: usize = 16 * 1024;

/// The output mark: [`PIPELINE_MARK`], or `--max-outbuf` if that is smaller.
pub(crate) fn output_mark(ctx: &ShardCtx) -> usize {
    PIPELINE_MARK.min(ctx.cfg.max_outbuf)
}

/// Whether an HTTP connection may take its next request now: no history read outstanding and its
/// queued output under the mark. The shard does not read a connection that may not.
pub(crate) fn accepts_request(ctx: &ShardCtx, conn: &Conn) -> bool {
    match &conn.phase {
        // A change feed reads (and drops) input, so the peer's close is seen at once.
        Phase::Http(state) if state.feed.is_some() => true,
        Phase::Http(state) => !state.awaiting_reply && conn.out.queued_bytes() < output_mark(ctx),
        _ => true,
    }
}

/// Appends input to the request buffer and serves the complete requests in it, as far as the output
/// mark allows.
pub(crate) fn on_input(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, data: &[u8]) {
    if matches!(&conn.phase, Phase::Http(state) if state.feed.is_some()) {
        return;
    }
    conn.inbuf.extend_from_slice(data);
    serve_buffered(ctx, conn, key);
}

/// Serves the requests waiting in the connection's input buffer until it runs out of complete
/// requests or may not take another one yet ([`accepts_request`]).
pub(crate) fn serve_buffered(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    let max = ctx.cfg.max_header_bytes;
    // Bytes of `inbuf` served so far (removed once at the end, not per request).
    let mut at = 0;
    loop {
        if !accepts_request(ctx, conn) {
            break;
        }
        let Phase::Http(state) = &conn.phase else { break };
        let over_capacity = state.over_capacity;
        let (consumed, req) = match request::try_parse(&conn.inbuf[at..], max) {
            Ok(None) => break,
            Ok(Some(parsed)) => parsed,
            Err(err) => {
                let resp = Response::error(err.status(), err.code(), &err.to_string());
                conn.set_close_reason(CloseReason::ProtocolError);
                // A refused HEAD (e.g. one announcing a body) still gets no body.
                let head_only = request::names_head(&conn.inbuf[at..]);
                respond(ctx, conn, key, resp, false, head_only);
                break;
            }
        };
        if over_capacity {
            let resp = Response::error(503, "server_full", "the server is at its connection limit; retry later")
                .with_header("Retry-After: 1".into());
            conn.set_close_reason(CloseReason::OverLimit);
            respond(ctx, conn, key, resp, false, req.head_only);
            break;
        }
        if conn.ip_slot.over_limit() {
            conn.set_close_reason(AccessError::TooManyFromAddress.close_reason());
            respond(ctx, conn, key, AccessError::TooManyFromAddress.response(), false, req.head_only);
            break;
        }
        if api_route::is_api(&req.path) && !ops_only(conn) {
            match api_request(ctx, conn, key, &req, at + consumed) {
                Some(end) => {
                    at = end;
                    continue;
                }
                None => break,
            }
        }
        at += consumed;
        if !matches!(req.method, Method::Get | Method::Head) {
            // A body, if any, is not read: the connection closes after the answer.
            let resp = Response::error(405, "method_not_allowed", &format!("{} allows GET, HEAD", req.path))
                .with_header("Allow: GET, HEAD".into());
            let keep_alive = req.keep_alive && req.content_length == 0;
            respond(ctx, conn, key, resp, keep_alive, req.head_only);
            if keep_alive {
                continue;
            }
            break;
        }
        handle(ctx, conn, key, req);
        if matches!(conn.phase, Phase::Ws(_)) {
            // Bytes after the handshake are the client's first frames.
            let mut rest = std::mem::take(&mut conn.inbuf);
            if rest.len() > at {
                ws_session::on_input(ctx, conn, key, &mut rest[at..]);
            }
            return;
        }
    }
    // A closing connection has dropped its input already.
    if at >= conn.inbuf.len() {
        conn.inbuf = Vec::new();
    } else if at > 0 {
        conn.inbuf.drain(..at);
    }
}

fn ops_only(conn: &Conn) -> bool {
    matches!(&conn.phase, Phase::Http(state) if state.ops_only)
}

/// A server API request whose head ends at `body_at` in the input buffer: refused from its head,
/// or served once its body has arrived. Returns where the next request starts, or `None` when the
/// body is still arriving (bounded by its route's limit, and in time by the handshake deadline, which
/// only an answer re-arms) or the connection is closing.
fn api_request(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, req: &Request, body_at: usize) -> Option<usize> {
    let route = match api_session::admit(ctx, req) {
        Ok(route) => route,
        Err(resp) => {
            // An unread body cannot be skipped safely: close after the answer.
            let keep_alive = req.keep_alive && req.content_length == 0;
            respond(ctx, conn, key, resp, keep_alive, req.head_only);
            return keep_alive.then_some(body_at);
        }
    };
    let end = body_at.checked_add(req.content_length)?;
    let body = conn.inbuf.get(body_at..end)?.to_vec();
    match api_session::serve(ctx, conn, key, req, route, &body) {
        api_session::Served::Now(resp) => respond(ctx, conn, key, resp, req.keep_alive, false),
        api_session::Served::Later => {
            if let Phase::Http(state) = &mut conn.phase {
                state.awaiting_reply = true;
            }
        }
        // Input after the request is dropped: a streaming connection takes no further request.
        api_session::Served::Streaming => return Some(conn.inbuf.len()),
    }
    matches!(conn.phase, Phase::Http(_)).then_some(end)
}

/// Cluster mode: an id a server API request waits for; answers it once every id is told.
pub(crate) fn on_sequenced(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    index: u32,
    result: Result<u64, ClientError>,
) {
    let Phase::Http(state) = &mut conn.phase else { return };
    let Some(pending) = state.pending_ids.as_mut() else { return };
    let Some(served) = api_session::on_sequenced(ctx, pending, index, result) else { return };
    let keep_alive = pending.keep_alive;
    state.pending_ids = None;
    if let api_session::Served::Now(resp) = served {
        state.awaiting_reply = false;
        respond(ctx, conn, key, resp, keep_alive, false);
        serve_buffered(ctx, conn, key);
    }
}

/// An answer the server API decided elsewhere (see `api_session`), then any pipelined request.
pub(crate) fn on_reply(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, resp: Response, keep_alive: bool) {
    let Phase::Http(state) = &mut conn.phase else { return };
    if !state.awaiting_reply {
        return;
    }
    state.awaiting_reply = false;
    respond(ctx, conn, key, resp, keep_alive, false);
    serve_buffered(ctx, conn, key);
}

fn handle(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, req: Request) {
    let keep_alive = req.keep_alive;
    let head_only = req.head_only;
    let ops_only = matches!(&conn.phase, Phase::Http(state) if state.ops_only);
    match listener_route(route(&req.path), ops_only, ctx.cfg.metrics_addr.is_some()) {
        Route::WebSocket => upgrade(ctx, conn, key, &req),
        Route::Health => {
            let persistence = ctx.store.as_ref().map(|store| {
                let stats = store.stats();
                json::PersistenceHealth {
                    queue_depth: stats.queue_depth,
                    queue_capacity: stats.queue_capacity,
                    congested: stats.congested,
                    retrying: stats.retrying,
                    commit_errors: stats.commit_errors,
                    rows_written: stats.rows_written,
                }
            });
            let connections = ctx.open_conns.load(std::sync::atomic::Ordering::Relaxed);
            let cluster = ctx.telemetry.cluster_health();
            let body = json::health(connections, ctx.cfg.shards.get(), persistence, cluster);
            respond(ctx, conn, key, Response::json(200, body), keep_alive, head_only);
        }
        Route::Static(path) => {
            let resp = match static_files::lookup(ctx.cfg.static_dir.as_deref(), &path) {
                Ok(file) => Response::new(200, file.content_type, file.body.into_owned()),
                Err(err) => Response::error(err.status(), err.code(), &err.to_string()),
            };
            respond(ctx, conn, key, resp, keep_alive, head_only);
        }
        Route::ClientLibrary => {
            let file = static_files::client_library();
            let resp = Response::new(200, file.content_type, file.body.into_owned());
            respond(ctx, conn, key, resp, keep_alive, head_only);
        }
        Route::History(room) => match decoded_room(room) {
            Ok(room) => history(ctx, conn, key, &room, &req),
            Err(err) => respond(ctx, conn, key, Response::client_error(&err), keep_alive, head_only),
        },
        Route::ReadMarker(room) => match decoded_room(room) {
            Ok(room) => read_marker(ctx, conn, key, &room, &req),
            Err(err) => respond(ctx, conn, key, Response::client_error(&err), keep_alive, head_only),
        },
        Route::Metrics => respond(ctx, conn, key, ops::metrics(ctx), keep_alive, head_only),
        Route::Ready => respond(ctx, conn, key, ops::ready(ctx), keep_alive, head_only),
        Route::NotFound => {
            let resp = Response::error(404, "not_found", &format!("no such path: {}", req.path));
            respond(ctx, conn, key, resp, keep_alive, head_only);
        }
    }
}

/// What a listener serves of a route. The `--metrics-addr` listener (`ops_only`) serves the operations
/// endpoints only; when it exists, the main listener no longer serves `/metrics`. `/healthz` and
/// `/readyz` stay on both (they tell little: up, ready, connection count).
fn listener_route(route: Route, ops_only: bool, separate_metrics: bool) -> Route {
    match route {
        Route::Metrics if !ops_only && separate_metrics => Route::NotFound,
        Route::Metrics | Route::Health | Route::Ready => route,
        _ if ops_only => Route::NotFound,
        _ => route,
    }
}

/// Queues a response (head and body as they are, the body not copied); closes after it unless
/// `keep_alive`, else re-arms the idle deadline.
fn respond(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, resp: Response, keep_alive: bool, head_only: bool) {
    let (head, body) = resp.into_parts(keep_alive, head_only);
    conn.send_unbounded(head);
    if !body.is_empty() {
        conn.send_unbounded(body);
    }
    if keep_alive {
        // The metrics listener's connections have their own, short, idle limit.
        let ops_only = matches!(&conn.phase, Phase::Http(state) if state.ops_only);
        let idle = if ops_only { ctx.cfg.metrics_idle_timeout() } else { ctx.cfg.handshake_timeout() };
        conn.deadline = Some(Instant::now() + idle);
    } else {
        let deadline = ctx.linger_deadline();
        conn.close_after_flush(deadline);
        conn.phase = Phase::Closing;
    }
    ctx.schedule.flush(key);
}

/// Query parameters of the WebSocket endpoint.
struct WsParams {
    room: String,
    nick: Option<String>,
    format: Format,
    since: Option<u64>,
    epoch: Option<String>,
}

fn ws_params(query: &str, json_subprotocol: bool) -> Result<WsParams, ClientError> {
    let mut params = WsParams {
        room: "general".into(),
        nick: None,
        format: if json_subprotocol { Format::Json } else { Format::Text },
        since: None,
        epoch: None,
    };
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "room" => params.room = decoded_room(v)?,
            "nick" => params.nick = Some(decoded(v, "nick", ErrorCode::InvalidNick)?),
            "format" => match decoded(v, "format", ErrorCode::InvalidParameter)?.as_str() {
                "json" => params.format = Format::Json,
                "text" if !json_subprotocol => params.format = Format::Text,
                "text" => {}
                other => {
                    return Err(ClientError::new(
                        ErrorCode::InvalidParameter,
                        format!("format must be text or json, not {other:?}"),
                    ));
                }
            },
            "since" => params.since = Some(parse_id("since", v)?),
            "epoch" => params.epoch = Some(decoded(v, "epoch", ErrorCode::InvalidParameter)?),
            _ => {}
        }
    }
    names::validate_room(&params.room)?;
    if let Some(nick) = &params.nick {
        params.nick = Some(names::validate_nick(nick)?.to_string());
    }
    Ok(params)
}

/// A room name from a URL (query value or path segment): one that does not percent-decode is refused
/// with `invalid_room`, never repaired.
/// `GET /rooms/{room}/read`: the asking user's read marker in `room` and the messages above it,
/// `{room, id, unread}` (`id` 0: no marker). The user is the token's (auth on) or the `nick` query
/// parameter (without auth, where names are not verified).
fn read_marker(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room: &str, req: &Request) {
    let (keep_alive, head_only) = (req.keep_alive, req.head_only);
    let admitted = match ctx.gate.admit_rest(req, room).and_then(|a| {
        gate::Gate::not_revoked(&a, &ctx.api.revocations)?;
        Ok(a)
    }) {
        Ok(admitted) => admitted,
        Err(err) => {
            if !keep_alive {
                conn.set_close_reason(err.close_reason());
            }
            return respond(ctx, conn, key, err.response(), keep_alive, head_only);
        }
    };
    let nick = query_pairs(&req.query).find(|(k, _)| k == "nick").and_then(|(_, v)| v.ok());
    let user = match admitted.user.or(nick) {
        Some(user) => user,
        None => {
            let err = ClientError::new(ErrorCode::MissingField, "whose marker? give nick= (or a token with auth on)");
            return respond(ctx, conn, key, Response::client_error(&err), keep_alive, head_only);
        }
    };
    if let Err(err) = names::validate_room(room).and_then(|()| gate::may_use(&admitted.grant, &user, room)) {
        return respond(ctx, conn, key, Response::client_error(&err), keep_alive, head_only);
    }
    let Some(store) = ctx.store.as_ref() else {
        let resp = Response::error(503, "history_unavailable", "this server keeps no history (--no-persist)");
        return respond(ctx, conn, key, resp, keep_alive, head_only);
    };
    let to = ConnRef { shard: ctx.shard, key, serial: conn.serial };
    let answerer = ctx.api.answerer();
    let reply_room = room.to_string();
    store.read_state(
        Arc::from(room),
        Arc::from(user.as_str()),
        store.enqueued_seq(),
        Box::new(move |result| {
            let response = match result {
                Ok((id, unread)) => Response::json(200, json::read_marker_body(&reply_room, id, unread)),
                Err(err) => {
                    Response::error(503, "history_unavailable", &format!("the marker could not be read: {err}"))
                }
            };
            answerer.answer(to, response, keep_alive);
        }),
    );
    if let Phase::Http(state) = &mut conn.phase {
        state.awaiting_reply = true;
    }
}

fn decoded_room(value: Result<String, PercentError>) -> Result<String, ClientError> {
    decoded(value, "room name", ErrorCode::InvalidRoom)
}

/// A percent-decoded query value, or `code` naming the parameter whose escapes do not decode.
fn decoded(value: Result<String, PercentError>, name: &str, code: ErrorCode) -> Result<String, ClientError> {
    value.map_err(|err| ClientError::new(code, format!("{name}: {err}")))
}

fn parse_id(name: &str, value: Result<String, PercentError>) -> Result<u64, ClientError> {
    let value = decoded(value, name, ErrorCode::InvalidParameter)?;
    value.parse::<u64>().map_err(|_| {
        ClientError::new(ErrorCode::InvalidParameter, format!("{name} must be a non-negative integer, not {value:?}"))
    })
}

fn upgrade(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, req: &Request) {
    let accepted = match upgrade::validate(req, ctx.cfg.deflate) {
        Ok(accepted) => accepted,
        Err(err) => {
            conn.set_close_reason(CloseReason::ProtocolError);
            return respond(ctx, conn, key, err.response(), false, req.head_only);
        }
    };
    let params = match ws_params(&req.query, accepted.json_subprotocol) {
        Ok(params) => params,
        Err(err) => {
            conn.set_close_reason(CloseReason::ProtocolError);
            return respond(ctx, conn, key, Response::client_error(&err), false, req.head_only);
        }
    };
    let admitted = match ctx.gate.admit_upgrade(req, &params.room) {
        Ok(admitted) => admitted,
        Err(err) => {
            conn.set_close_reason(err.close_reason());
            return respond(ctx, conn, key, err.response(), false, req.head_only);
        }
    };
    // With auth on, the name comes from the token and `nick` is ignored.
    let user: Arc<str> = match admitted.user.as_deref().or(params.nick.as_deref()) {
        Some(name) => Arc::from(name),
        // Shared: thousands of anonymous load-test connections need not each allocate the name.
        None => Arc::clone(&super::state::ANONYMOUS),
    };
    // Someone else's direct messages (the token's user, or the nick without auth).
    if let Err(err) = gate::may_use(&admitted.grant, &user, &params.room) {
        conn.set_close_reason(CloseReason::AuthFailure);
        let status = if err.code == ErrorCode::Forbidden { 403 } else { 400 };
        let resp = Response::error(status, err.code.as_str(), &err.message);
        return respond(ctx, conn, key, resp, false, req.head_only);
    }
    let now = json::now_millis();
    if let Some(until) = ctx.api.moderation.banned_until(&user, now) {
        conn.set_close_reason(CloseReason::AuthFailure);
        let message = format!("{user:?} is banned for {} more seconds", (until - now + 999) / 1000);
        return respond(ctx, conn, key, Response::error(403, "banned", &message), false, req.head_only);
    }
    if let Err(err) = gate::Gate::not_revoked(&admitted, &ctx.api.revocations) {
        conn.set_close_reason(err.close_reason());
        return respond(ctx, conn, key, err.response(), false, req.head_only);
    }
    let entry = ConnEntry {
        conn: ConnRef { shard: ctx.shard, key, serial: conn.serial },
        format: params.format,
        peer: conn.peer,
        connected_at_ms: now,
    };
    // Only a verified name is limited: without auth anyone may claim any nick (or share `anonymous`).
    let max_per_user = if admitted.user.is_some() { ctx.cfg.max_conns_per_user } else { 0 };
    if !ctx.api.registry.add_within(&user, entry, max_per_user) {
        let err = AccessError::TooManyForUser { user: user.to_string(), max: max_per_user };
        conn.set_close_reason(err.close_reason());
        return respond(ctx, conn, key, err.response(), false, req.head_only);
    }
    conn.send_unbounded(upgrade::switching_protocols(&accepted));
    if accepted.deflate.is_some() {
        ctx.metrics.deflate_negotiated.inc();
    }
    conn.phase = Phase::Ws(Box::new(WsState {
        format: params.format,
        deflate: accepted.deflate,
        user: Arc::clone(&user),
        decoder: Default::default(),
        rooms: Vec::new(),
        limits: ClientLimits::new(admitted.grant, &ctx.gate.rates, Instant::now()),
        paced: Default::default(),
        token: admitted.token.map(|t| TokenLife::new(t.exp, Instant::now(), now)),
        own: Default::default(),
        welcome: None,
    }));
    conn.deadline = None;
    tracing::debug!(shard = ctx.shard, key, peer = %conn.peer, room = %params.room, format = ?params.format, "upgraded");
    if params.format == Format::Json {
        let expires_in = admitted.token.map(|t| token_life::expires_in(t.exp, now));
        let pending = PendingWelcome {
            expires_in,
            room: params.room,
            since: params.since,
            epoch: params.epoch,
            frames: Vec::new(),
        };
        let limits = ws_session::limits(&ctx.cfg);
        if let Some(handshake) = super::direct::welcome(ctx, conn, key, pending, &limits) {
            ws_session::join(ctx, conn, key, &handshake.room, handshake.since, handshake.epoch.as_deref());
        }
    } else {
        ws_session::join(ctx, conn, key, &params.room, params.since, params.epoch.as_deref());
    }
    ctx.schedule.flush(key);
}

fn history(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room: &str, req: &Request) {
    let (keep_alive, head_only) = (req.keep_alive, req.head_only);
    if let Err(err) = ctx.gate.admit_rest(req, room).and_then(|a| gate::Gate::not_revoked(&a, &ctx.api.revocations)) {
        if !keep_alive {
            conn.set_close_reason(err.close_reason());
        }
        return respond(ctx, conn, key, err.response(), keep_alive, head_only);
    }
    let query = match history_query(room, &req.query) {
        Ok(query) => query,
        Err(err) => return respond(ctx, conn, key, Response::client_error(&err), keep_alive, head_only),
    };
    let purpose = HistoryPurpose::Rest { keep_alive, head_only };
    if !history::submit(ctx, key, conn.serial, query, purpose) {
        let resp = Response::error(503, "history_unavailable", "history is disabled on this server (--no-persist)");
        return respond(ctx, conn, key, resp, keep_alive, head_only);
    }
    if let Phase::Http(state) = &mut conn.phase {
        state.awaiting_reply = true;
    }
}

fn history_query(room: &str, query: &str) -> Result<HistoryQuery, ClientError> {
    names::validate_room(room)?;
    let mut req = PageRequest::default();
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "before_id" => req.before_id = Some(parse_id("before_id", v)?),
            "after_id" => req.after_id = Some(parse_id("after_id", v)?),
            "limit" => req.limit = Some(parse_id("limit", v)?),
            _ => {}
        }
    }
    history::query(room, req)
}

/// Answers a REST history request with the page (or 503), then serves any pipelined request.
pub(crate) fn on_history(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    keep_alive: bool,
    head_only: bool,
    result: Result<HistoryPage, StoreError>,
) {
    let Phase::Http(state) = &mut conn.phase else { return };
    state.awaiting_reply = false;
    let resp = match result {
        Ok(page) => Response::json(200, json::history_array(&page.messages)),
        Err(err) => Response::error(503, "history_unavailable", &format!("history could not be read: {err}")),
    };
    respond(ctx, conn, key, resp, keep_alive, head_only);
    serve_buffered(ctx, conn, key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_params_defaults_and_errors() {
        let p = ws_params("", false).expect("defaults");
        assert_eq!((p.room.as_str(), p.format, p.nick, p.since), ("general", Format::Text, None, None));
        let p = ws_params("room=a%20b&nick=+Al+&format=json&since=7", false).expect("valid");
        assert_eq!((p.room.as_str(), p.format, p.nick.as_deref(), p.since), ("a b", Format::Json, Some("Al"), Some(7)));
        assert_eq!(ws_params("format=text", true).expect("subprotocol wins").format, Format::Json);
        let code = |q| ws_params(q, false).err().map(|e| e.code);
        assert_eq!(code("room="), Some(ErrorCode::InvalidRoom));
        assert_eq!(code("nick=%01"), Some(ErrorCode::InvalidNick));
        assert_eq!(code("format=xml"), Some(ErrorCode::InvalidParameter));
        assert_eq!(code("since=-1"), Some(ErrorCode::InvalidParameter));
        for bad in ["room=%ff", "room=%fe", "room=%zz", "room=%", "room=a%", "room=%C3%28"] {
            assert_eq!(code(bad), Some(ErrorCode::InvalidRoom), "{bad}");
        }
        assert_eq!(code("nick=%ff"), Some(ErrorCode::InvalidNick));
        assert_eq!(code("since=%zz"), Some(ErrorCode::InvalidParameter));
        assert_eq!(ws_params("x%zz=1&room=ok", false).expect("unknown keys are ignored").room, "ok");
    }

    #[test]
    fn the_metrics_listener_serves_operations_only() {
        use Route::*;
        assert_eq!(listener_route(Metrics, false, false), Metrics, "default: /metrics on the main listener");
        assert_eq!(listener_route(Metrics, false, true), NotFound);
        assert_eq!(listener_route(Metrics, true, true), Metrics);
        for ops in [Health, Ready] {
            assert_eq!(listener_route(ops.clone(), false, true), ops);
            assert_eq!(listener_route(ops.clone(), true, true), ops);
        }
        for other in [WebSocket, Static("index.html".into()), ClientLibrary, History(Ok("r".into()))] {
            assert_eq!(listener_route(other.clone(), true, true), NotFound);
            assert_eq!(listener_route(other.clone(), false, true), other);
        }
    }

    #[test]
    fn history_query_validation() {
        let q = history_query("r", "").expect("defaults");
        assert_eq!((q.before_id, q.after_id, q.limit), (None, None, history::DEFAULT_PAGE));
        assert_eq!(history_query("r", "limit=1000").expect("clamped").limit, history::MAX_PAGE);
        assert_eq!(history_query("r", "before_id=10&limit=5").expect("ok").before_id, Some(10));
        for bad in ["limit=abc", "limit=-1", "limit=0", "before_id=x", "after_id=-5", "before_id=1&after_id=2"] {
            assert_eq!(history_query("r", bad).err().map(|e| e.code), Some(ErrorCode::InvalidParameter), "{bad}");
        }
        assert_eq!(history_query("", "").err().map(|e| e.code), Some(ErrorCode::InvalidRoom));
    }
}
