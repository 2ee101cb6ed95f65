import { DurableObject } from "cloudflare:workers";

// One object per /bench/<name>. Sockets are hibernatable, so a quiet object
// is evicted and only its sockets (and their attachments) stay; that is
// what the idle and wake scenarios measure on each runtime.
export class Bench extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    // Answered by the runtime without waking the object (the ping scenario
    // relies on it, and so does a client keeping a quiet socket alive).
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
    // Lost when the object hibernates: `recall` answering nothing is how the
    // wake scenario tells a real wake from an object that stayed in memory.
    this.remembered = "";
  }

  async fetch(request) {
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("expected a WebSocket upgrade", { status: 426 });
    }
    const tags = new URL(request.url).searchParams.getAll("tag");
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server, tags);
    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(ws, message) {
    if (typeof message !== "string") {
      ws.send(message);
      return;
    }
    const colon = message.indexOf(":");
    const command = colon < 0 ? message : message.slice(0, colon);
    const arg = colon < 0 ? "" : message.slice(colon + 1);
    switch (command) {
      case "echo":
        ws.send(arg);
        return;
      case "bcast":
        // The same string to every socket: a runtime may send it once
        // encoded, which is part of what the broadcast scenario measures.
        for (const each of this.ctx.getWebSockets()) each.send(arg);
        return;
      case "attach":
        ws.serializeAttachment(arg);
        ws.send("ok");
        return;
      case "getattach":
        ws.send(ws.deserializeAttachment() ?? "");
        return;
      case "count":
        ws.send(String(this.ctx.getWebSockets().length));
        return;
      case "tags":
        ws.send(this.ctx.getTags(ws).join(","));
        return;
      case "put": {
        const eq = arg.indexOf("=");
        if (eq < 0) {
          ws.send("err:put needs K=V");
          return;
        }
        await this.ctx.storage.put(arg.slice(0, eq), arg.slice(eq + 1));
        ws.send("ok");
        return;
      }
      case "get":
        ws.send((await this.ctx.storage.get(arg)) ?? "");
        return;
      case "remember":
        this.remembered = arg;
        ws.send("ok");
        return;
      case "recall":
        ws.send(this.remembered);
        return;
      default:
        ws.send(`err:unknown command ${command}`);
    }
  }

  async webSocketClose(ws, code, reason, wasClean) {
    // Completes the closing handshake where the runtime leaves it to the app.
    try {
      ws.close(code === 1005 ? 1000 : code, "bye");
    } catch {
      // Already closed; nothing to answer.
    }
  }
}

export default {
  async fetch(request, env) {
    const match = new URL(request.url).pathname.match(/^\/bench\/([A-Za-z0-9_.-]+)$/);
    if (!match) {
      return new Response("not found: use /bench/<name>", { status: 404 });
    }
    const stub = env.BENCH.get(env.BENCH.idFromName(match[1]));
    return stub.fetch(request);
  },
};
