import { DurableObject } from "cloudflare:workers";
import { HISTORY, chat, presence } from "./messages.js";

// One room per name. Sockets are accepted as hibernatable: while nobody
// talks, the room is evicted and its members' names survive in their
// sockets' attachments.
export class ChatRoom extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS messages (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      name TEXT NOT NULL,
      text TEXT NOT NULL,
      at INTEGER NOT NULL
    )`);
    // Answered without waking the room.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  async fetch(request) {
    if (request.headers.get("Upgrade") !== "websocket") {
      const { n } = this.sql.exec("SELECT COUNT(*) AS n FROM messages").one();
      const lastSpeaker = (await this.ctx.storage.get("lastSpeaker")) ?? null;
      return Response.json({ messages: n, sockets: this.ctx.getWebSockets().length, lastSpeaker });
    }
    const url = new URL(request.url);
    const name = url.searchParams.get("name") || "anonymous";
    const role = url.searchParams.get("role") || "member";

    const webSocketPair = new WebSocketPair();
    const [client, server] = Object.values(webSocketPair);
    this.ctx.acceptWebSocket(server, [role]);
    server.serializeAttachment({ name, joinedAt: Date.now() });

    const history = this.sql
      .exec("SELECT name, text FROM messages ORDER BY id DESC LIMIT ?", HISTORY)
      .toArray()
      .reverse();
    server.send(JSON.stringify({ type: "hello", greeting: this.env.GREETING, history }));
    this.broadcast(presence("join", name));

    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(ws, message) {
    const { name } = ws.deserializeAttachment();
    if (message === "whoami") {
      ws.send(JSON.stringify({ type: "whoami", name, tags: this.ctx.getTags(ws) }));
      return;
    }
    if (typeof message !== "string") {
      ws.send(JSON.stringify({ type: "error", error: "text only" }));
      return;
    }
    if (message === "boom") {
      throw new Error("the room was asked to fail");
    }
    this.sql.exec("INSERT INTO messages (name, text, at) VALUES (?, ?, ?)", name, message, Date.now());
    await this.ctx.storage.put("lastSpeaker", name);
    this.broadcast(chat(name, message));
  }

  async webSocketClose(ws, code, reason, wasClean) {
    const { name } = ws.deserializeAttachment();
    this.broadcast(presence("leave", name), ws);
  }

  broadcast(text, except) {
    for (const ws of this.ctx.getWebSockets()) {
      if (ws !== except) ws.send(text);
    }
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const match = url.pathname.match(/^\/rooms\/([A-Za-z0-9_-]+)$/);
    if (!match) {
      return new Response("Not found", { status: 404 });
    }
    const stub = env.ROOMS.get(env.ROOMS.idFromName(match[1]));
    return stub.fetch(request);
  },
};
