import { DurableObject } from "cloudflare:workers";
// wrangler's default rules: .txt is text, .bin is data.
import NOTE from "./note.txt";
import BLOB from "./blob.bin";

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");

export class Lab extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    // Events wait for this, timer and all, as on Cloudflare.
    ctx.blockConcurrencyWhile(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      this.loaded = (await ctx.storage.get("loaded")) ?? 0;
    });
  }

  async fetch(request) {
    const url = new URL(request.url);
    switch (url.searchParams.get("op")) {
      case "spin":
        for (;;) {}
      case "recurse": {
        const deeper = (n) => deeper(n + 1) + 1;
        return new Response(String(deeper(0)));
      }
      case "timers": {
        for (let i = 0; i < 20000; i++) setTimeout(() => {}, 60000);
        return new Response("made");
      }
      case "hog": {
        const chunks = [];
        for (;;) chunks.push(new Array(1 << 20).fill(chunks.length));
      }
      case "count": {
        const n = (this.ctx.storage.kv.get("n") ?? 0) + 1;
        this.ctx.storage.kv.put("n", n);
        return new Response(String(n));
      }
      case "ids": {
        const ns = this.env.LAB;
        const unique = ns.newUniqueId();
        const again = ns.idFromString(unique.toString());
        let refused = null;
        try {
          ns.idFromString("0".repeat(64));
        } catch (e) {
          refused = e.constructor.name;
        }
        const byName = ns.idFromName(this.ctx.id.name);
        let cleared = true;
        const timer = setTimeout(() => (cleared = false), 5);
        clearTimeout(timer);
        await new Promise((resolve) => setTimeout(resolve, 20));
        return Response.json({
          roundTrip: again.equals(unique) && again.toString() === unique.toString(),
          distinct: !ns.newUniqueId().equals(unique),
          refused,
          sameAsMine: byName.equals(this.ctx.id),
          cleared,
        });
      }
      case "peek":
        return new Response(String(this.ctx.storage.kv.get("n") ?? 0));
      case "fire": {
        // Not awaited: the call is made all the same.
        this.env.LAB.getByName(`${this.ctx.id.name}-target`).fetch(`https://lab/lab/x?op=count`);
        return new Response("fired");
      }
      case "wait": {
        const ms = Number(url.searchParams.get("ms") ?? "10");
        const started = Date.now();
        await new Promise((resolve) => setTimeout(resolve, ms));
        return Response.json({ waited: Date.now() - started >= ms });
      }
      case "kv": {
        const storage = this.ctx.storage;
        await storage.put({ "a:1": { when: new Date(0), tags: new Set(["x"]) }, "a:2": [1, 2], "b:1": "b" });
        const one = await storage.get("a:1");
        const many = await storage.get(["a:2", "b:1", "missing"]);
        const listed = await storage.list({ prefix: "a:" });
        const removed = await storage.delete(["a:2", "missing"]);
        return Response.json({
          date: one.when instanceof Date && one.when.getTime() === 0,
          set: one.tags instanceof Set && one.tags.has("x"),
          many: [...many.keys()],
          listed: [...listed.keys()],
          removed,
          after: (await storage.list()).size,
        });
      }
      case "sql": {
        const sql = this.ctx.storage.sql;
        sql.exec("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER, b BLOB)");
        sql.exec("INSERT OR REPLACE INTO t VALUES (?, ?, ?)", "x", 41, new Uint8Array([1, 2]));
        this.ctx.storage.transactionSync(() => {
          sql.exec("UPDATE t SET v = v + 1 WHERE k = ?", "x");
        });
        try {
          this.ctx.storage.transactionSync(() => {
            sql.exec("UPDATE t SET v = 0");
            throw new Error("undo");
          });
        } catch (e) {}
        const row = sql.exec("SELECT k, v, b FROM t").one();
        const raw = [...sql.exec("SELECT v FROM t").raw()];
        return Response.json({ k: row.k, v: row.v, blob: [...new Uint8Array(row.b)], raw });
      }
      case "web": {
        const u = new URL("/a/../b/c?x=1&y=two%20words#frag", "https://example.com:443/base/");
        u.searchParams.append("z", "3");
        const text = new TextDecoder().decode(new TextEncoder().encode("héllo"));
        const digest = hex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode("abc")));
        const sha1 = hex(await crypto.subtle.digest({ name: "SHA-1" }, new TextEncoder().encode("abc")));
        const cloned = structuredClone({ m: new Map([[1, "one"]]), d: new Date(5) });
        const h = new Headers({ "X-One": "1" });
        h.append("x-one", "2");
        const random = crypto.getRandomValues(new Uint8Array(8));
        const numbered = await new Response(5).text();
        const rewritten = await new Request("https://lab/elsewhere", new Request("https://lab/", { method: "POST", body: "payload" })).text();
        let microtask = false;
        queueMicrotask(() => (microtask = true));
        await null;
        return Response.json({
          href: u.href,
          host: u.host,
          y: u.searchParams.get("y"),
          text,
          digest,
          sha1,
          b64: btoa("hi!"),
          unb64: atob("aGkh"),
          map: cloned.m.get(1),
          date: cloned.d.getTime(),
          header: h.get("X-ONE"),
          uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID()),
          random: random.length,
          microtask,
          rewritten,
          numbered,
          note: NOTE.trim(),
          blob: [...new Uint8Array(BLOB)],
          method: request.method,
          id: this.ctx.id.toString().length,
          name: this.ctx.id.name ?? null,
        });
      }
      case "loaded": {
        await this.ctx.storage.put("loaded", this.loaded + 1);
        return Response.json({ loaded: this.loaded });
      }
      case "alarm": {
        await this.ctx.storage.setAlarm(Date.now() + 50);
        return new Response("set");
      }
      case "alarms":
        return new Response(String((await this.ctx.storage.get("alarms")) ?? 0));
      case "rpc": {
        const other = this.env.LAB.get(this.env.LAB.idFromName("rpc-callee"));
        const sum = await other.add(2, 3);
        const echoed = await (await other.fetch("https://lab/lab/rpc-callee?op=count")).text();
        const back = await other.same({ when: new Date(7), map: new Map([["k", 1]]) });
        const types = back.when instanceof Date && back.when.getTime() === 7 && back.map.get("k") === 1;
        return Response.json({ sum, echoed, types });
      }
      case "throw":
        throw new TypeError("thrown on purpose");
      default:
        return new Response("no such op", { status: 404 });
    }
  }

  async alarm(info) {
    const n = ((await this.ctx.storage.get("alarms")) ?? 0) + 1;
    await this.ctx.storage.put("alarms", n);
  }

  async add(a, b) {
    return a + b;
  }

  same(value) {
    return value;
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [, , name] = url.pathname.split("/");
    if (!name) return new Response("usage: /lab/NAME?op=OP", { status: 400 });
    return env.LAB.getByName(name).fetch(request);
  },
};
