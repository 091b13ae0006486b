//! The server API's listings on an HTTP connection: answered at once on a single node; in cluster
//! mode once the cluster's listing thread has read the other nodes' users from Redis (the answer
//! then comes through the shard's inbox, `ShardMsg::Reply`, like a durable change's), merged with
//! this node's by `api::listings`. Redis unreachable, or the listing queue full: 503 `unavailable`
//! (a partial list presented as the whole would mislead a backend).

use std::sync::Arc;

use super::ctx::ShardCtx;
use crate::api::Api;
use crate::http::response::Response;
use crate::protocol::api::{self as bodies, NodeUser};
use crate::room::hub::Hub;
use crate::room::sequencer::UsersDone;
use crate::types::ConnRef;

/// What is listed.
pub(super) enum Listing {
    /// `GET /api/rooms`.
    Rooms,
    /// `GET /api/rooms/{room}/presence`.
    Presence(String),
    /// `GET /api/users/{user}/connections`.
    Connections(String),
}

/// Serves `listing` for the HTTP connection `me`: the answer now, or `None` when it comes through
/// the inbox.
pub(super) fn list(ctx: &ShardCtx, me: ConnRef, keep_alive: bool, listing: Listing) -> Option<Response> {
    if !ctx.hub.is_clustered() {
        return Some(render(&ctx.hub, &ctx.api, &listing, &[]));
    }
    let user = match &listing {
        Listing::Connections(user) => Some(Arc::from(user.as_str())),
        Listing::Rooms | Listing::Presence(_) => None,
    };
    let (hub, api, answerer) = (Arc::clone(&ctx.hub), Arc::clone(&ctx.api), ctx.api.answerer());
    let done: UsersDone = Box::new(move |remote| {
        let response = match remote {
            Ok(remote) => render(&hub, &api, &listing, &remote),
            Err(why) => unavailable(&why),
        };
        answerer.answer(me, response, keep_alive);
    });
    ctx.hub.remote_users(user, done).map(|_| unavailable("too many listings in progress; retry"))
}

/// The answer to `listing`, with the other nodes' users `remote`.
fn render(hub: &Hub, api: &Api, listing: &Listing, remote: &[NodeUser]) -> Response {
    let body = match listing {
        Listing::Rooms => bodies::rooms_body(&Api::rooms(hub, remote)),
        Listing::Presence(room) => bodies::presence_body(room, &Api::presence(hub, room, remote)),
        Listing::Connections(user) => {
            let (connections, rooms) = api.connections(hub, user, remote);
            bodies::connections_body(user, &connections, &rooms)
        }
    };
    Response::json(200, body)
}

fn unavailable(why: &str) -> Response {
    Response::error(503, "unavailable", &format!("the other nodes' connections cannot be read: {why}"))
}
