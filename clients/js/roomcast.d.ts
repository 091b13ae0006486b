// Types of roomcast.js, the client library of the roomcast chat server.

/** Version of the library. */
export declare const VERSION: string;

/** Tunable options and their defaults. */
export interface Tunables {
  /** First reconnect delay ceiling, before jitter (500). */
  backoffBaseMs: number;
  /** Largest reconnect delay ceiling (20000). */
  backoffMaxMs: number;
  /** A connection up this long resets the backoff count (10000). */
  stableAfterMs: number;
  /** Ping period; a ping unanswered for a whole period drops the socket (25000). */
  heartbeatMs: number;
  /** A socket without `welcome` this long after it was created is dropped and retried (15000). */
  connectTimeoutMs: number;
  /** Messages per history page, capped by the server's `max_history_page` (50). */
  historyPageSize: number;
  /** Sent messages awaiting their echo; past it the oldest is given up (1000). */
  maxUnconfirmed: number;
}
export declare const DEFAULTS: Readonly<Tunables>;

/** Anything with the browser WebSocket's constructor (browsers, Node 22+, Node 20's behind a flag, the `ws` package). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}
/** Called with the subprotocols (`roomcast.v1.json`, `bearer.<token>`) when a token is given. */
export type WebSocketConstructor = new (url: string, protocols?: string[]) => WebSocketLike;

/** Gives a JWT (or nothing: connect without one). */
export type TokenProvider = () => string | undefined | null | Promise<string | undefined | null>;

export interface ClientOptions extends Partial<Tunables> {
  /** `ws://host/ws` or `wss://…` (`http(s)://` is accepted). Default in a browser page: this page's host, `/ws`. */
  url?: string;
  /** Nickname (ignored by the server when auth is on: the token names the user). */
  nick?: string;
  /**
   * Called before every connection attempt and again when the server says the token expired (the
   * new one is sent in band as `refresh`; the connection stays). Sent as a `bearer.<token>`
   * subprotocol entry, never in the URL.
   */
  tokenProvider?: TokenProvider;
  /** A JWT, or a token provider (the older name of `tokenProvider`, which wins when both are given). */
  token?: string | TokenProvider;
  /** The WebSocket constructor; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Timers (tests pass a fake clock); default the global ones. */
  clock?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(id: unknown): void };
  /** Uniform random numbers in [0, 1) for the jitter; default `Math.random`. */
  random?: () => number;
}

export type ConnectionState = "connecting" | "connected" | "disconnected";

/** Why the client is in its state (`state` events carry these fields too). */
export interface StateReason {
  /** `initial`, `connecting`, `connected`, `closed` (the socket closed), `heartbeat` (no answer to a ping), `timeout` (no `welcome` within connectTimeoutMs), `token` (the provider threw), `refused` (the WebSocket could not be created), `client` (close() was called). */
  kind: "initial" | "connecting" | "connected" | "closed" | "heartbeat" | "timeout" | "token" | "refused" | "client";
  /** Close code, for `closed`. */
  code?: number;
  /** Close reason, for `closed`. */
  reason?: string;
  wasClean?: boolean;
  message?: string;
  /** A reconnect is scheduled (false after close(), and after a 4500–4999 close). */
  willReconnect: boolean;
  /** Delay before it, when one is scheduled. */
  retryInMs?: number;
}

export interface StateEvent extends StateReason {
  state: ConnectionState;
  previous: ConnectionState;
}

export interface Limits {
  max_message_bytes: number;
  max_rooms: number;
  max_history_page: number;
}

export interface WelcomeEvent {
  user: string;
  epoch: string | null;
  limits: Limits | null;
  connectionId: number;
  /** Seconds until the token expires (auth on). */
  expiresIn?: number;
}

export interface JoinedEvent {
  room: string;
  members: string[];
  memberCount: number;
  /** The room's `last_id` at the join. */
  lastId: number;
  /** The server's ids started again: forget what you hold of the room and page history afresh. */
  reset: boolean;
  /** This subscription was joined before (a resume after a reconnect). */
  rejoin: boolean;
  /** Your user's read marker in the room (0: never marked; null: unknown, e.g. without history). */
  readId: number | null;
  /** Messages above `readId` that are not deleted (only with a marker). */
  unread: number | null;
}

export interface Message {
  id: number;
  room: string;
  user: string;
  content: string;
  /** RFC 3339 UTC with milliseconds. */
  ts: string;
  /** The sender's client_id, when it gave one (live messages only). */
  clientId?: string;
  /** The client id of this client's own publish() that this message confirms. */
  confirms?: string;
  /** Sent by this client's user. */
  mine: boolean;
  /** When it was last edited (read back from history; live edits arrive as `edited` events). */
  editedTs?: string;
  /** Deleted: a tombstone without user and content (read back from history). */
  deleted: boolean;
}

/** A message's new content; `seq` is the edit's own place in the room's order. */
export interface EditedEvent {
  room: string;
  /** The message edited. */
  id: number;
  user: string;
  content: string;
  editedTs: string;
  seq: number | null;
  mine: boolean;
}

/** A message was deleted (show it as gone). */
export interface DeletedEvent {
  room: string;
  id: number;
  seq: number | null;
}

/** Your user's read marker in a room; `unread` only when it comes from `joined`. */
export interface ReadEvent {
  room: string;
  id: number;
  unread: number | null;
}

export interface PresenceEvent {
  room: string;
  user: string;
  event: "join" | "leave";
  /** About this client's own user. */
  self: boolean;
}

export interface ErrorEvent {
  /** Server error code (docs/PROTOCOL.md), or `bad_frame`. */
  code: string;
  message: string;
  clientId?: string;
}

export interface HistoryPage {
  room: string;
  messages: Message[];
  hasMore: boolean;
}

export interface OlderPage {
  /** Oldest first. */
  messages: Message[];
  hasMore: boolean;
}

export interface EventMap {
  state: StateEvent;
  welcome: WelcomeEvent;
  joined: JoinedEvent;
  /** `byServer`: the server left the room for this client (a refreshed token no longer grants it). */
  left: { room: string; byServer: boolean };
  /** The server accepted a refreshed token (asked of the token provider after `token_expired`). */
  refreshed: { expiresIn: number };
  message: Message;
  edited: EditedEvent;
  deleted: DeletedEvent;
  read: ReadEvent;
  /** Direct-message rooms of yours (after `welcome`, and when someone opens one with you). */
  dmRooms: { rooms: string[] };
  /** Someone else is typing: show it until their next message or for 5 s. */
  typing: { room: string; user: string };
  presence: PresenceEvent;
  error: ErrorEvent;
  /** A frame of a type this library does not know (a newer server). */
  unknown: Record<string, unknown>;
}

export declare class RoomcastError extends Error {
  constructor(code: string, message: string);
  readonly code: string;
}

export declare class Room {
  readonly client: RoomcastClient;
  readonly name: string;
  readonly joined: boolean;
  readonly members: ReadonlySet<string>;
  readonly memberCount: number;
  /** The resume cursor (null before the first `joined`). */
  readonly lastId: number | null;
  readonly cursorEpoch: string | null;
  /** `last_id` of the `joined` that started the subscription (or of the last reset). */
  readonly startId: number | null;
  readonly oldestId: number | null;
  readonly atStart: boolean;
  /** Your user's read marker, as far as this client knows. */
  readonly readId: number | null;
  loadOlder(options?: { limit?: number }): Promise<OlderPage>;
  publish(content: string, options?: { clientId?: string }): Published;
  edit(id: number, content: string): void;
  delete(id: number): void;
  typing(): void;
  markRead(id: number): void;
  leave(): Promise<void>;
}

export interface Published {
  clientId: string;
  /** Resolves with the stored message; rejects with a RoomcastError when refused, discarded or left. */
  confirmed: Promise<Message>;
}

export declare class RoomcastClient {
  constructor(options?: ClientOptions);
  readonly state: ConnectionState;
  readonly reason: StateReason;
  readonly user: string | null;
  readonly epoch: string | null;
  readonly limits: Limits | null;
  readonly attempt: number;
  readonly rooms: ReadonlyMap<string, Room>;
  room(name: string): Room | undefined;
  on<K extends keyof EventMap>(type: K, listener: (event: EventMap[K]) => void): () => void;
  off<K extends keyof EventMap>(type: K, listener: (event: EventMap[K]) => void): void;
  connect(): void;
  close(): void;
  reconnectNow(): void;
  send(command: Record<string, unknown>): boolean;
  join(name: string): Room;
  leave(name: string): Promise<void>;
  publish(room: string, content: string, options?: { clientId?: string }): Published;
  discard(clientId: string): void;
  edit(room: string, id: number, content: string): void;
  delete(room: string, id: number): void;
  /** Call on every key press: at most one notice per 2 s is sent. */
  typing(room: string): void;
  markRead(room: string, id: number): void;
  /** A direct message to `to`, in the pair's room (subscribed to if needed). */
  dm(to: string, content: string, options?: { clientId?: string }): Published & { room: string };
  history(room: string, page?: { beforeId?: number; afterId?: number; limit?: number }): Promise<HistoryPage>;
}

export declare function utf8Length(text: string): number;
export declare function roomNameProblem(name: string): string | null;
export declare function nickProblem(nick: string): string | null;
/** `dm:<a>,<b>`, the names sorted. */
export declare function dmRoom(a: string, b: string): string;
/** The other user of a DM room of `me`'s, else null. */
export declare function dmPeer(room: string, me: string): string | null;
export declare function reconnectAllowed(code: number | undefined): boolean;
export declare function backoffDelay(
  attempt: number,
  policy: Pick<Tunables, "backoffBaseMs" | "backoffMaxMs">,
  random?: () => number,
): number;
