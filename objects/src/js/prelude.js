// The Workers globals a Durable Objects app touches, written for Torpor on
// top of a handful of host functions (`native`, from js/bridge.rs). It runs
// once per app context, before the app's modules. What Torpor does not
// have throws a TypeError that says so rather than doing nothing.
//
// Not here: the event loop (js/object.rs drives promises) and anything that
// keeps state outside the object's storage and the edge.
(function (native) {
  "use strict";
  const g = globalThis;
  const unsupported = (what) => {
    throw new TypeError(`${what} is not supported by Torpor`);
  };

  // ---- console --------------------------------------------------------
  const show = (v) => {
    if (typeof v === "string") return v;
    if (v instanceof Error) return `${v.name}: ${v.message}\n${v.stack || ""}`;
    try {
      const s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch (_) {
      return String(v);
    }
  };
  const logAt = (level) => (...args) => native.log(level, args.map(show).join(" "));
  g.console = {
    log: logAt("info"),
    info: logAt("info"),
    debug: logAt("debug"),
    trace: logAt("trace"),
    warn: logAt("warn"),
    error: logAt("error"),
  };

  // ---- bytes and text -------------------------------------------------
  const toBuffer = (data) => {
    if (data instanceof ArrayBuffer) return data;
    if (ArrayBuffer.isView(data)) {
      return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
    }
    throw new TypeError("expected an ArrayBuffer or a typed array");
  };
  class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(input = "") {
      return new Uint8Array(native.utf8Encode(String(input)));
    }
  }
  class TextDecoder {
    constructor(label = "utf-8", options = {}) {
      const l = String(label).toLowerCase();
      if (l !== "utf-8" && l !== "utf8" && l !== "unicode-1-1-utf-8") {
        throw new RangeError(`TextDecoder: only utf-8 is supported by Torpor, not ${label}`);
      }
      this.fatal = !!options.fatal;
    }
    get encoding() {
      return "utf-8";
    }
    decode(input, options) {
      if (options && options.stream) unsupported("TextDecoder streaming");
      if (input === undefined) return "";
      return native.utf8Decode(toBuffer(input), this.fatal);
    }
  }
  g.TextEncoder = TextEncoder;
  g.TextDecoder = TextDecoder;

  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  g.btoa = (input) => {
    const s = String(input);
    let out = "";
    for (let i = 0; i < s.length; i += 3) {
      const c = [s.charCodeAt(i), s.charCodeAt(i + 1), s.charCodeAt(i + 2)];
      for (const x of c) {
        if (x > 255) throw new DOMException("btoa: character outside Latin1", "InvalidCharacterError");
      }
      const n = (c[0] << 16) | ((c[1] || 0) << 8) | (c[2] || 0);
      out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
      out += i + 1 < s.length ? B64[(n >> 6) & 63] : "=";
      out += i + 2 < s.length ? B64[n & 63] : "=";
    }
    return out;
  };
  g.atob = (input) => {
    let s = String(input).replace(/[\t\n\f\r ]/g, "");
    if (s.length % 4 === 0) s = s.replace(/==?$/, "");
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) {
      throw new DOMException("atob: not valid base64", "InvalidCharacterError");
    }
    let out = "";
    let bits = 0;
    let value = 0;
    for (const ch of s) {
      value = (value << 6) | B64.indexOf(ch);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += String.fromCharCode((value >> bits) & 255);
      }
    }
    return out;
  };

  class DOMException extends Error {
    constructor(message = "", name = "Error") {
      super(message);
      this.name = name;
    }
  }
  g.DOMException = DOMException;

  // ---- structured clone (plain data) ---------------------------------
  // Attachments and stored values go through this encoding: JSON with
  // tagged forms for what JSON lacks, so Dates, Maps, Sets, binary data,
  // BigInts and undefined come back as they went in. Functions, symbols
  // and class instances' prototypes do not survive, as with structured
  // clone.
  const TAG = "$torpor";
  const encode = (value, seen) => {
    switch (typeof value) {
      case "undefined":
        return { [TAG]: "undefined" };
      case "bigint":
        return { [TAG]: "bigint", v: value.toString() };
      case "number":
        if (Number.isFinite(value) && !Object.is(value, -0)) return value;
        return { [TAG]: "number", v: String(value) };
      case "string":
      case "boolean":
        return value;
      case "function":
      case "symbol":
        throw new DOMException(`${typeof value} could not be cloned`, "DataCloneError");
    }
    if (value === null) return null;
    if (seen.has(value)) throw new DOMException("a cyclic value could not be cloned", "DataCloneError");
    seen.add(value);
    try {
      if (value instanceof Date) return { [TAG]: "Date", v: value.getTime() };
      if (value instanceof RegExp) return { [TAG]: "RegExp", v: value.source, f: value.flags };
      if (value instanceof ArrayBuffer) return { [TAG]: "ArrayBuffer", v: bytesToB64(new Uint8Array(value)) };
      if (ArrayBuffer.isView(value)) {
        const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
        return { [TAG]: value.constructor.name, v: bytesToB64(bytes) };
      }
      if (value instanceof Map) return { [TAG]: "Map", v: [...value].map(([k, v]) => [encode(k, seen), encode(v, seen)]) };
      if (value instanceof Set) return { [TAG]: "Set", v: [...value].map((v) => encode(v, seen)) };
      if (value instanceof Error) return { [TAG]: "Error", n: value.name, m: value.message };
      if (Array.isArray(value)) return value.map((v) => encode(v, seen));
      const out = {};
      for (const key of Object.keys(value)) out[key] = encode(value[key], seen);
      return TAG in out ? { [TAG]: "Object", v: out } : out;
    } finally {
      seen.delete(value);
    }
  };
  const decode = (value) => {
    if (value === null || typeof value !== "object") return value;
    if (Array.isArray(value)) return value.map(decode);
    const tag = value[TAG];
    if (tag === undefined) {
      const out = {};
      for (const key of Object.keys(value)) out[key] = decode(value[key]);
      return out;
    }
    switch (tag) {
      case "undefined":
        return undefined;
      case "bigint":
        return BigInt(value.v);
      case "number":
        return Number(value.v === "-0" ? -0 : value.v);
      case "Date":
        return new Date(value.v);
      case "RegExp":
        return new RegExp(value.v, value.f);
      case "ArrayBuffer":
        return b64ToBytes(value.v).buffer;
      case "Map":
        return new Map(value.v.map(([k, v]) => [decode(k), decode(v)]));
      case "Set":
        return new Set(value.v.map(decode));
      case "Error": {
        const E = g[value.n] && g[value.n].prototype instanceof Error ? g[value.n] : Error;
        return new E(value.m);
      }
      case "Object": {
        const out = {};
        for (const key of Object.keys(value.v)) out[key] = decode(value.v[key]);
        return out;
      }
      default: {
        const View = g[tag];
        if (typeof View === "function" && View.BYTES_PER_ELEMENT) {
          const bytes = b64ToBytes(value.v);
          return new View(bytes.buffer, 0, bytes.byteLength / View.BYTES_PER_ELEMENT);
        }
        throw new DOMException(`unknown stored type ${tag}`, "DataCloneError");
      }
    }
  };
  const bytesToB64 = (bytes) => {
    let s = "";
    for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return g.btoa(s);
  };
  const b64ToBytes = (b64) => {
    const s = g.atob(b64);
    const bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
    return bytes;
  };
  const serialize = (value) => JSON.stringify(encode(value, new Set()));
  const deserialize = (text) => decode(JSON.parse(text));
  g.structuredClone = (value) => deserialize(serialize(value));

  // ---- crypto ---------------------------------------------------------
  const DIGESTS = { "SHA-1": "sha-1", "SHA-256": "sha-256", "SHA-384": "sha-384", "SHA-512": "sha-512" };
  g.crypto = {
    getRandomValues(array) {
      if (!ArrayBuffer.isView(array) || array instanceof Float32Array || array instanceof Float64Array) {
        throw new TypeError("getRandomValues: an integer typed array is required");
      }
      if (array.byteLength > 65536) {
        throw new DOMException(`getRandomValues: ${array.byteLength} bytes, limit 65536`, "QuotaExceededError");
      }
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(new Uint8Array(native.randomBytes(array.byteLength)));
      return array;
    },
    randomUUID() {
      const b = new Uint8Array(native.randomBytes(16));
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    },
    subtle: {
      async digest(algorithm, data) {
        const name = typeof algorithm === "string" ? algorithm : algorithm && algorithm.name;
        const which = DIGESTS[String(name).toUpperCase()];
        if (!which) throw new DOMException(`digest: ${name} is not supported by Torpor`, "NotSupportedError");
        return native.digest(which, toBuffer(data));
      },
    },
  };
  for (const op of ["encrypt", "decrypt", "sign", "verify", "importKey", "exportKey", "generateKey", "deriveKey", "deriveBits", "wrapKey", "unwrapKey"]) {
    g.crypto.subtle[op] = async () => unsupported(`crypto.subtle.${op}`);
  }

  // ---- timers ---------------------------------------------------------
  // A timer runs inside the event of the object (or request) that set it:
  // the handler's promise is not settled while it waits for one. A timer
  // still pending when the handler's promise settles fires during a later
  // event of the same instance, or never if the instance hibernates first.
  let nextTimer = 1;
  const timers = new Map();
  const startTimer = (callback, ms, args, repeat) => {
    if (typeof callback !== "function") throw new TypeError("setTimeout: a function is required");
    const id = nextTimer++;
    const delay = Math.max(0, Number(ms) || 0);
    const arm = () => {
      timers.set(id, true);
      native.sleep(delay).then(() => {
        if (!timers.get(id)) return;
        if (repeat) arm();
        else timers.delete(id);
        callback(...args);
      });
    };
    arm();
    return id;
  };
  g.setTimeout = (callback, ms, ...args) => startTimer(callback, ms, args, false);
  g.setInterval = (callback, ms, ...args) => startTimer(callback, ms, args, true);
  g.clearTimeout = (id) => void timers.delete(id);
  g.clearInterval = g.clearTimeout;
  if (typeof g.queueMicrotask !== "function") {
    g.queueMicrotask = (callback) => void Promise.resolve().then(callback);
  }

  // ---- URL ------------------------------------------------------------
  const encodeQuery = (s) =>
    encodeURIComponent(s).replace(/%20/g, "+").replace(/[!'()~]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  const decodeQuery = (s) => {
    try {
      return decodeURIComponent(s.replace(/\+/g, " "));
    } catch (_) {
      return s;
    }
  };
  class URLSearchParams {
    #list = [];
    #url = null;
    constructor(init = "") {
      if (typeof init === "string") {
        this.#parse(init);
      } else if (init instanceof URLSearchParams) {
        this.#list = init.#list.map(([k, v]) => [k, v]);
      } else if (init && typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const [k, v] = [...pair];
          this.#list.push([String(k), String(v)]);
        }
      } else if (init && typeof init === "object") {
        for (const k of Object.keys(init)) this.#list.push([k, String(init[k])]);
      }
    }
    #parse(text) {
      this.#list = [];
      const s = text.startsWith("?") ? text.slice(1) : text;
      for (const part of s.split("&")) {
        if (!part) continue;
        const at = part.indexOf("=");
        const k = at < 0 ? part : part.slice(0, at);
        const v = at < 0 ? "" : part.slice(at + 1);
        this.#list.push([decodeQuery(k), decodeQuery(v)]);
      }
    }
    static _attach(params, url) {
      params.#url = url;
    }
    static _reset(params, text) {
      params.#parse(text);
    }
    #update() {
      if (this.#url) this.#url._setQuery(this.toString());
    }
    get size() {
      return this.#list.length;
    }
    append(k, v) {
      this.#list.push([String(k), String(v)]);
      this.#update();
    }
    delete(k) {
      this.#list = this.#list.filter(([n]) => n !== String(k));
      this.#update();
    }
    get(k) {
      const e = this.#list.find(([n]) => n === String(k));
      return e ? e[1] : null;
    }
    getAll(k) {
      return this.#list.filter(([n]) => n === String(k)).map(([, v]) => v);
    }
    has(k) {
      return this.#list.some(([n]) => n === String(k));
    }
    set(k, v) {
      const i = this.#list.findIndex(([n]) => n === String(k));
      if (i < 0) this.#list.push([String(k), String(v)]);
      else this.#list = this.#list.filter(([n], j) => j <= i || n !== String(k)).map((e, j) => (j === i ? [e[0], String(v)] : e));
      this.#update();
    }
    sort() {
      this.#list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      this.#update();
    }
    forEach(fn, self) {
      for (const [k, v] of this.#list) fn.call(self, v, k, this);
    }
    *entries() {
      yield* this.#list.map(([k, v]) => [k, v]);
    }
    *keys() {
      for (const [k] of this.#list) yield k;
    }
    *values() {
      for (const [, v] of this.#list) yield v;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    toString() {
      return this.#list.map(([k, v]) => `${encodeQuery(k)}=${encodeQuery(v)}`).join("&");
    }
  }
  g.URLSearchParams = URLSearchParams;

  const DEFAULT_PORTS = { "http:": "80", "https:": "443", "ws:": "80", "wss:": "443" };
  const ABSOLUTE = /^([a-zA-Z][a-zA-Z0-9+.-]*):(.*)$/;
  const normalizePath = (path) => {
    const out = [];
    const parts = path.split("/");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      const last = i === parts.length - 1;
      if (p === "..") {
        if (out.length > 1) out.pop();
        if (last) out.push("");
      } else if (p === ".") {
        if (last) out.push("");
      } else {
        out.push(p);
      }
    }
    const joined = out.join("/");
    return joined.startsWith("/") ? joined : "/" + joined;
  };
  const pathEscape = (p) => p.replace(/[ "<>`{}]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0"));
  // Special (http, https, ws, wss) URLs as the WHATWG parser reads them;
  // other schemes are kept opaque. Not a full implementation: IDNA and
  // IPv6 hosts are taken as written.
  class URL {
    #protocol = "";
    #username = "";
    #password = "";
    #hostname = "";
    #port = "";
    #pathname = "/";
    #search = "";
    #hash = "";
    #params;
    constructor(input, base) {
      let s = String(input).trim();
      const m = ABSOLUTE.exec(s);
      if (m) {
        this.#parseAbsolute(m[1].toLowerCase() + ":", m[2], s);
      } else {
        if (base === undefined) throw new TypeError(`Invalid URL: ${s}`);
        const b = base instanceof URL ? base : new URL(base);
        this.#protocol = b.protocol;
        this.#username = b.username;
        this.#password = b.password;
        this.#hostname = b.hostname;
        this.#port = b.port;
        if (s.startsWith("//")) {
          this.#parseAbsolute(b.protocol, s, s);
        } else {
          const [rest, hash] = splitOnce(s, "#");
          const [path, query] = splitOnce(rest, "?");
          if (path === "") {
            this.#pathname = b.pathname;
            this.#search = query === null ? b.search : query ? "?" + query : "";
          } else if (path.startsWith("/")) {
            this.#pathname = normalizePath(pathEscape(path));
            this.#search = query ? "?" + query : "";
          } else {
            const dir = b.pathname.slice(0, b.pathname.lastIndexOf("/") + 1);
            this.#pathname = normalizePath(dir + pathEscape(path));
            this.#search = query ? "?" + query : "";
          }
          this.#hash = hash ? "#" + hash : "";
        }
      }
      this.#params = new URLSearchParams(this.#search);
      URLSearchParams._attach(this.#params, this);
    }
    #parseAbsolute(protocol, rest, whole) {
      this.#protocol = protocol;
      if (!(protocol in DEFAULT_PORTS)) {
        const [body, hash] = splitOnce(rest, "#");
        const [path, query] = splitOnce(body, "?");
        this.#pathname = path;
        this.#search = query ? "?" + query : "";
        this.#hash = hash ? "#" + hash : "";
        return;
      }
      rest = rest.replace(/\\/g, "/").replace(/^\/*/, "");
      const end = rest.search(/[/?#]/);
      const authority = end < 0 ? rest : rest.slice(0, end);
      const tail = end < 0 ? "" : rest.slice(end);
      const at = authority.lastIndexOf("@");
      const hostport = at < 0 ? authority : authority.slice(at + 1);
      if (at >= 0) {
        const [user, pass] = splitOnce(authority.slice(0, at), ":");
        this.#username = user;
        this.#password = pass || "";
      }
      const colon = hostport.lastIndexOf(":");
      const host = colon < 0 || hostport.endsWith("]") ? hostport : hostport.slice(0, colon);
      const port = colon < 0 || hostport.endsWith("]") ? "" : hostport.slice(colon + 1);
      if (!host || /[\s<>^|%]/.test(host) || (port && !/^\d+$/.test(port)) || Number(port) > 65535) {
        throw new TypeError(`Invalid URL: ${whole}`);
      }
      this.#hostname = host.toLowerCase();
      this.#port = port === "" || String(Number(port)) === DEFAULT_PORTS[protocol] ? "" : String(Number(port));
      const [body, hash] = splitOnce(tail, "#");
      const [path, query] = splitOnce(body, "?");
      this.#pathname = normalizePath(pathEscape(path || "/"));
      this.#search = query ? "?" + query : "";
      this.#hash = hash ? "#" + hash : "";
    }
    _setQuery(text) {
      this.#search = text ? "?" + text : "";
    }
    static canParse(input, base) {
      try {
        new URL(input, base);
        return true;
      } catch (_) {
        return false;
      }
    }
    get protocol() {
      return this.#protocol;
    }
    set protocol(v) {
      const p = String(v).replace(/:.*$/, "").toLowerCase() + ":";
      if ((p in DEFAULT_PORTS) === (this.#protocol in DEFAULT_PORTS)) this.#protocol = p;
    }
    get username() {
      return this.#username;
    }
    get password() {
      return this.#password;
    }
    get hostname() {
      return this.#hostname;
    }
    set hostname(v) {
      this.#hostname = String(v).toLowerCase();
    }
    get port() {
      return this.#port;
    }
    set port(v) {
      const p = String(v);
      this.#port = p === DEFAULT_PORTS[this.#protocol] ? "" : p;
    }
    get host() {
      return this.#port ? `${this.#hostname}:${this.#port}` : this.#hostname;
    }
    set host(v) {
      const [h, p] = splitOnce(String(v), ":");
      this.hostname = h;
      if (p !== null) this.port = p;
    }
    get origin() {
      return this.#protocol in DEFAULT_PORTS ? `${this.#protocol}//${this.host}` : "null";
    }
    get pathname() {
      return this.#pathname;
    }
    set pathname(v) {
      const p = String(v);
      this.#pathname = normalizePath(pathEscape(p.startsWith("/") ? p : "/" + p));
    }
    get search() {
      return this.#search === "?" ? "" : this.#search;
    }
    set search(v) {
      const s = String(v);
      this.#search = s === "" ? "" : s.startsWith("?") ? s : "?" + s;
      URLSearchParams._reset(this.#params, this.#search);
    }
    get searchParams() {
      return this.#params;
    }
    get hash() {
      return this.#hash === "#" ? "" : this.#hash;
    }
    set hash(v) {
      const s = String(v);
      this.#hash = s === "" ? "" : s.startsWith("#") ? s : "#" + s;
    }
    get href() {
      if (!(this.#protocol in DEFAULT_PORTS)) return `${this.#protocol}${this.#pathname}${this.#search}${this.#hash}`;
      const auth = this.#username ? `${this.#username}${this.#password ? ":" + this.#password : ""}@` : "";
      return `${this.#protocol}//${auth}${this.host}${this.#pathname}${this.search}${this.hash}`;
    }
    toString() {
      return this.href;
    }
    toJSON() {
      return this.href;
    }
  }
  const splitOnce = (s, sep) => {
    const i = s.indexOf(sep);
    return i < 0 ? [s, null] : [s.slice(0, i), s.slice(i + 1)];
  };
  g.URL = URL;

  // ---- Headers, Request, Response ------------------------------------
  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  class Headers {
    #map = new Map();
    constructor(init) {
      if (init instanceof Headers) {
        for (const [k, v] of init) this.append(k, v);
      } else if (Array.isArray(init) || (init && typeof init[Symbol.iterator] === "function")) {
        for (const pair of init) {
          const [k, v] = [...pair];
          this.append(k, v);
        }
      } else if (init && typeof init === "object") {
        for (const k of Object.keys(init)) this.append(k, init[k]);
      }
    }
    #name(k) {
      const n = String(k).toLowerCase();
      if (!TOKEN.test(n)) throw new TypeError(`Invalid header name: ${k}`);
      return n;
    }
    append(k, v) {
      const n = this.#name(k);
      const value = String(v).trim();
      if (/[\r\n\0]/.test(value)) throw new TypeError(`Invalid header value for ${k}`);
      const list = this.#map.get(n);
      if (list) list.push(value);
      else this.#map.set(n, [value]);
    }
    set(k, v) {
      this.#map.delete(this.#name(k));
      this.append(k, v);
    }
    get(k) {
      const list = this.#map.get(this.#name(k));
      return list ? list.join(", ") : null;
    }
    getAll(k) {
      return (this.#map.get(this.#name(k)) || []).slice();
    }
    getSetCookie() {
      return this.getAll("set-cookie");
    }
    has(k) {
      return this.#map.has(this.#name(k));
    }
    delete(k) {
      this.#map.delete(this.#name(k));
    }
    forEach(fn, self) {
      for (const [k, v] of this) fn.call(self, v, k, this);
    }
    *entries() {
      const names = [...this.#map.keys()].sort();
      for (const n of names) {
        if (n === "set-cookie") for (const v of this.#map.get(n)) yield [n, v];
        else yield [n, this.#map.get(n).join(", ")];
      }
    }
    *keys() {
      for (const [k] of this.entries()) yield k;
    }
    *values() {
      for (const [, v] of this.entries()) yield v;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    _pairs() {
      const out = [];
      for (const [n, list] of this.#map) for (const v of list) out.push([n, v]);
      return out;
    }
  }
  g.Headers = Headers;

  // Bodies are held whole: Torpor's requests and responses are bounded
  // in size by the edge, and streams are not supported.
  const bodyBytes = (body) => {
    if (body === undefined || body === null) return null;
    if (typeof body === "string") return new Uint8Array(native.utf8Encode(body));
    if (body instanceof ArrayBuffer) return new Uint8Array(body.slice(0));
    if (ArrayBuffer.isView(body)) return new Uint8Array(toBuffer(body));
    if (body instanceof URLSearchParams) return new Uint8Array(native.utf8Encode(body.toString()));
    const kind = Object.prototype.toString.call(body);
    if (typeof body.getReader === "function" || kind === "[object Blob]" || kind === "[object FormData]") {
      unsupported(`a body of type ${kind} (streams, Blob, FormData)`);
    }
    // Anything else is a string to the Fetch API (`new Response(5)`).
    return new Uint8Array(native.utf8Encode(String(body)));
  };
  const defaultType = (body) => {
    if (typeof body === "string" || (body !== null && body !== undefined && typeof body !== "object")) {
      return "text/plain;charset=UTF-8";
    }
    if (body instanceof URLSearchParams) return "application/x-www-form-urlencoded;charset=UTF-8";
    return null;
  };
  class Body {
    #bytes;
    #used = false;
    _initBody(body, headers) {
      this.#bytes = bodyBytes(body);
      const type = defaultType(body);
      if (type && !headers.has("content-type")) headers.set("content-type", type);
    }
    _bytes() {
      return this.#bytes;
    }
    get body() {
      if (this.#bytes === null) return null;
      return unsupported("ReadableStream bodies (use text(), json() or arrayBuffer())");
    }
    get bodyUsed() {
      return this.#used;
    }
    #take() {
      if (this.#used) throw new TypeError("Body has already been used");
      this.#used = true;
      return this.#bytes || new Uint8Array(0);
    }
    async arrayBuffer() {
      return toBuffer(this.#take());
    }
    async bytes() {
      return new Uint8Array(this.#take());
    }
    async text() {
      return native.utf8Decode(toBuffer(this.#take()), false);
    }
    async json() {
      return JSON.parse(await this.text());
    }
    async formData() {
      unsupported("formData()");
    }
    async blob() {
      unsupported("blob()");
    }
  }

  class Request extends Body {
    #url;
    #method;
    #headers;
    constructor(input, init = {}) {
      super();
      const from = input instanceof Request ? input : null;
      this.#url = from ? from.url : new URL(String(input)).href;
      this.#method = String(init.method || (from ? from.method : "GET")).toUpperCase();
      this.#headers = new Headers(init.headers || (from ? from.headers : undefined));
      // `new Request(url, request)` takes the other request's body
      // without reading it as a stream.
      let body =
        init instanceof Request ? init._bytes() : init.body !== undefined ? init.body : from ? from._bytes() : null;
      if (body !== null && body !== undefined && (this.#method === "GET" || this.#method === "HEAD")) {
        throw new TypeError("Request with GET/HEAD method cannot have body.");
      }
      this._initBody(body, this.#headers);
      // Which upgrade of the edge this request carries, if any: what
      // acceptWebSocket and a stub's fetch hand on.
      this._upgrade = init._upgrade !== undefined ? init._upgrade : from ? from._upgrade : null;
      this.signal = init.signal || (from ? from.signal : undefined);
      this.cf = init.cf || (from ? from.cf : undefined);
    }
    get url() {
      return this.#url;
    }
    get method() {
      return this.#method;
    }
    get headers() {
      return this.#headers;
    }
    get redirect() {
      return "follow";
    }
    clone() {
      return new Request(this);
    }
  }
  g.Request = Request;

  class Response extends Body {
    #status;
    #statusText;
    #headers;
    #webSocket;
    constructor(body = null, init = {}) {
      super();
      const status = init.status === undefined ? 200 : Number(init.status);
      const ws = init.webSocket || null;
      if (ws) {
        if (status !== 101) throw new RangeError("a Response with a webSocket must have status 101");
        if (!(ws instanceof WebSocket)) throw new TypeError("webSocket must be a WebSocket from a WebSocketPair");
      } else if (!Number.isInteger(status) || status < 200 || status > 599) {
        throw new RangeError(`Responses may only be constructed with status codes in the range 200 to 599, inclusive (got ${init.status})`);
      }
      this.#status = status;
      this.#statusText = init.statusText || "";
      this.#headers = new Headers(init.headers);
      this.#webSocket = ws;
      this._initBody(body, this.#headers);
    }
    static json(value, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
      return new Response(JSON.stringify(value), { ...init, headers });
    }
    static redirect(url, status = 302) {
      return new Response(null, { status, headers: { location: new URL(url).href } });
    }
    static error() {
      unsupported("Response.error()");
    }
    get status() {
      return this.#status;
    }
    get statusText() {
      return this.#statusText;
    }
    get ok() {
      return this.#status >= 200 && this.#status < 300;
    }
    get headers() {
      return this.#headers;
    }
    get webSocket() {
      return this.#webSocket;
    }
    get redirected() {
      return false;
    }
    get url() {
      return "";
    }
    clone() {
      return new Response(this._bytes(), { status: this.#status, statusText: this.#statusText, headers: this.#headers });
    }
  }
  g.Response = Response;

  g.fetch = async (input) => {
    const url = input instanceof Request ? input.url : String(input);
    throw new TypeError(`fetch(${url}): requests to other hosts are not supported by Torpor; call Durable Objects through their stubs`);
  };

  // ---- WebSockets -----------------------------------------------------
  const READY = { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 };
  class WebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    constructor(url) {
      if (url !== TOKEN_PAIR) unsupported("new WebSocket(url) (outbound WebSockets)");
      // `_id` is the edge's handle once accepted; `_object` the object it
      // belongs to, so a socket kept across objects is refused by name.
      this._id = null;
      this._object = null;
      this._pair = null;
      this._state = READY.CONNECTING;
    }
    get readyState() {
      return this._state;
    }
    get url() {
      return null;
    }
    get protocol() {
      return "";
    }
    get extensions() {
      return "";
    }
    #own(what) {
      if (this._id === null) {
        throw new TypeError(`WebSocket.${what}: the socket was not accepted; pass the server end of a WebSocketPair to ctx.acceptWebSocket`);
      }
      native.checkObject(this._object, `WebSocket.${what}`);
    }
    accept() {
      unsupported("WebSocket.accept() (Torpor's sockets are hibernatable: use ctx.acceptWebSocket)");
    }
    addEventListener() {
      unsupported("WebSocket event listeners (Torpor's sockets are hibernatable: define webSocketMessage on the class)");
    }
    send(data) {
      this.#own("send");
      if (typeof data === "string") native.send(this._id, data);
      else native.send(this._id, toBuffer(data));
    }
    close(code = 1000, reason = "") {
      const c = Number(code);
      if (!(c === 1000 || (c >= 3000 && c <= 4999))) {
        throw new TypeError(`Invalid WebSocket close code: ${code}.`);
      }
      // The edge has already finished the close handshake by the time
      // webSocketClose runs; closing again is nothing to do.
      if (this._state === READY.CLOSED) return;
      this.#own("close");
      native.close(this._id, Number(code), String(reason));
      this._state = READY.CLOSING;
    }
    serializeAttachment(value) {
      this.#own("serializeAttachment");
      native.setAttachment(this._id, serialize(value));
    }
    deserializeAttachment() {
      this.#own("deserializeAttachment");
      const text = native.attachment(this._id);
      return text === null || text === undefined ? null : deserialize(text);
    }
  }
  const TOKEN_PAIR = Symbol("pair");
  g.WebSocket = WebSocket;
  class WebSocketPair {
    constructor() {
      const client = new WebSocket(TOKEN_PAIR);
      const server = new WebSocket(TOKEN_PAIR);
      client._pair = server;
      server._pair = client;
      this[0] = client;
      this[1] = server;
    }
  }
  g.WebSocketPair = WebSocketPair;

  class WebSocketRequestResponsePair {
    #request;
    #response;
    constructor(request, response) {
      this.#request = String(request);
      this.#response = String(response);
    }
    get request() {
      return this.#request;
    }
    get response() {
      return this.#response;
    }
  }
  g.WebSocketRequestResponsePair = WebSocketRequestResponsePair;

  // ---- Durable Object ids, namespaces, stubs -------------------------
  class DurableObjectId {
    #hex;
    #name;
    constructor(hex, name) {
      this.#hex = hex;
      this.#name = name === null ? undefined : name;
    }
    toString() {
      return this.#hex;
    }
    equals(other) {
      return other instanceof DurableObjectId && other.toString() === this.#hex;
    }
    get name() {
      return this.#name;
    }
  }

  const requestParts = (request) => {
    const url = new URL(request.url);
    const bytes = request._bytes();
    return [request.method, url.pathname + url.search, request.headers._pairs(), bytes ? toBuffer(bytes) : null, request._upgrade];
  };
  const toResponse = (parts) => {
    const [status, headers, body, upgraded] = parts;
    if (upgraded) {
      // The callee accepted the upgrade this request carried; the socket
      // stays in the edge, and this end only lets the response say 101.
      const pair = new WebSocketPair();
      pair[0]._forwarded = true;
      return new Response(null, { status: 101, headers, webSocket: pair[0] });
    }
    return new Response(status === 204 || status === 304 ? null : body, { status: Math.max(200, status), headers });
  };
  class DurableObjectStub {
    #ns;
    #id;
    constructor(ns, id) {
      this.#ns = ns;
      this.#id = id;
      return new Proxy(this, {
        get(target, prop) {
          if (prop in target || typeof prop === "symbol") {
            // Private fields live on the stub, not on this proxy.
            const value = Reflect.get(target, prop, target);
            return typeof value === "function" ? value.bind(target) : value;
          }
          if (prop === "then") return undefined;
          return async (...args) => {
            // Arguments and results travel in the storage encoding, so
            // Dates, Maps and binary data arrive as they left (plain data
            // is plain JSON, what a Rust object's rpc reads).
            const result = await native.call(ns, id.toString(), id.name ?? null, String(prop), ["POST", "/", [], native.utf8Encode(serialize(args)), null]);
            const [status, , body] = result;
            const text = native.utf8Decode(body, false);
            if (status !== 200) throw new Error(`${String(prop)}: ${text}`);
            return text === "" ? undefined : deserialize(text);
          };
        },
      });
    }
    get id() {
      return this.#id;
    }
    get name() {
      return this.#id.name;
    }
    async fetch(input, init) {
      const request = input instanceof Request && init === undefined ? input : new Request(input, init);
      const result = await native.call(this.#ns, this.#id.toString(), this.#id.name ?? null, null, requestParts(request));
      return toResponse(result);
    }
    connect() {
      unsupported("stub.connect()");
    }
  }
  class DurableObjectNamespace {
    #name;
    constructor(name) {
      this.#name = name;
    }
    idFromName(name) {
      return new DurableObjectId(native.idFromName(this.#name, String(name)), String(name));
    }
    idFromString(text) {
      return new DurableObjectId(native.idFromString(this.#name, String(text)), null);
    }
    newUniqueId(options) {
      if (options && options.jurisdiction) unsupported("jurisdictions");
      return new DurableObjectId(native.newUniqueId(this.#name), null);
    }
    get(id, options) {
      if (!(id instanceof DurableObjectId)) throw new TypeError("get() takes a DurableObjectId");
      if (options && options.locationHint) void 0; // one node: a hint has nothing to choose
      return new DurableObjectStub(this.#name, id);
    }
    getByName(name) {
      return this.get(this.idFromName(name));
    }
    jurisdiction() {
      unsupported("jurisdictions");
    }
  }

  // ---- storage --------------------------------------------------------
  const MAX_KEYS = 128;
  const keyList = (keys, what) => {
    if (keys.length > MAX_KEYS) throw new RangeError(`${what}: ${keys.length} keys, limit ${MAX_KEYS}`);
    return keys.map(String);
  };
  class SqlStorageCursor {
    #columns;
    #rows;
    #next = 0;
    constructor(result) {
      this.#columns = result[0];
      this.#rows = result[1];
      this.rowsRead = result[2];
      this.rowsWritten = result[3];
    }
    get columnNames() {
      return this.#columns.slice();
    }
    #object(row) {
      const out = {};
      this.#columns.forEach((c, i) => (out[c] = row[i]));
      return out;
    }
    next() {
      if (this.#next >= this.#rows.length) return { done: true, value: undefined };
      return { done: false, value: this.#object(this.#rows[this.#next++]) };
    }
    toArray() {
      const out = [];
      for (let r = this.next(); !r.done; r = this.next()) out.push(r.value);
      return out;
    }
    one() {
      const rest = this.#rows.length - this.#next;
      if (rest !== 1) throw new Error(rest === 0 ? "Expected exactly one result from SQL query, but got no results." : "Expected exactly one result from SQL query, but got multiple results.");
      return this.next().value;
    }
    *raw() {
      while (this.#next < this.#rows.length) yield this.#rows[this.#next++].slice();
    }
    [Symbol.iterator]() {
      return this;
    }
  }
  const sqlValue = (v) => {
    if (ArrayBuffer.isView(v)) return toBuffer(v);
    if (typeof v === "bigint") {
      if (v > 9223372036854775807n || v < -9223372036854775808n) throw new RangeError("a BigInt SQL parameter must fit in 64 bits");
      return Number(v);
    }
    return v;
  };
  const sql = {
    exec(query, ...params) {
      return new SqlStorageCursor(native.sqlExec(String(query), params.map(sqlValue)));
    },
    get databaseSize() {
      return native.databaseSize();
    },
  };
  const syncKv = {
    get(key) {
      const found = native.kvGet([String(key)]);
      return found.length ? deserialize(found[0][1]) : undefined;
    },
    put(key, value) {
      native.kvPut([String(key)], [serialize(value)]);
    },
    delete(key) {
      return native.kvDelete([String(key)]) > 0;
    },
    list(options = {}) {
      return native.kvList(listOptions(options)).map(([k, v]) => [k, deserialize(v)]);
    },
  };
  const listOptions = (o) => {
    if (o.limit !== undefined && !(Number(o.limit) > 0)) throw new RangeError("List limit must be positive.");
    if (o.start !== undefined && o.startAfter !== undefined) throw new TypeError("list(): start and startAfter cannot be used together");
    return {
      prefix: o.prefix === undefined ? null : String(o.prefix),
      start: o.start === undefined ? null : String(o.start),
      startAfter: o.startAfter === undefined ? null : String(o.startAfter),
      end: o.end === undefined ? null : String(o.end),
      reverse: !!o.reverse,
      limit: o.limit === undefined ? null : Math.floor(Number(o.limit)),
    };
  };
  const alarmTime = (t) => {
    const ms = t instanceof Date ? t.getTime() : Number(t);
    if (!Number.isFinite(ms)) throw new TypeError("setAlarm() takes a Date or milliseconds since the epoch");
    return Math.max(0, ms);
  };
  class DurableObjectStorage {
    #objectId;
    constructor(objectId) {
      this.#objectId = objectId;
    }
    #own(what) {
      native.checkObject(this.#objectId, `storage.${what}`);
    }
    get sql() {
      this.#own("sql");
      return sql;
    }
    get kv() {
      this.#own("kv");
      return syncKv;
    }
    async get(keys, _options) {
      this.#own("get");
      if (Array.isArray(keys)) {
        const found = native.kvGet(keyList(keys, "get()"));
        return new Map(found.map(([k, v]) => [k, deserialize(v)]));
      }
      return syncKv.get(keys);
    }
    async put(keyOrEntries, value, _options) {
      this.#own("put");
      if (typeof keyOrEntries === "object" && keyOrEntries !== null) {
        const keys = keyList(Object.keys(keyOrEntries), "put()");
        native.kvPut(keys, keys.map((k) => serialize(keyOrEntries[k])));
        return;
      }
      if (value === undefined) throw new TypeError("put() needs a value");
      native.kvPut([String(keyOrEntries)], [serialize(value)]);
    }
    async delete(keys, _options) {
      this.#own("delete");
      if (Array.isArray(keys)) return native.kvDelete(keyList(keys, "delete()"));
      return native.kvDelete([String(keys)]) > 0;
    }
    async list(options = {}) {
      this.#own("list");
      return new Map(syncKv.list(options));
    }
    async deleteAll(_options) {
      this.#own("deleteAll");
      native.deleteAll();
    }
    async getAlarm(_options) {
      this.#own("getAlarm");
      return native.getAlarm();
    }
    async setAlarm(time, _options) {
      this.#own("setAlarm");
      native.setAlarm(alarmTime(time));
    }
    async deleteAlarm(_options) {
      this.#own("deleteAlarm");
      native.setAlarm(null);
    }
    transactionSync(fn) {
      this.#own("transactionSync");
      native.savepoint();
      let value;
      try {
        value = fn();
      } catch (e) {
        native.release(false);
        throw e;
      }
      native.release(true);
      return value;
    }
    // The closure runs inside a savepoint; Torpor's events already run one
    // at a time, so nothing else interleaves while it awaits.
    async transaction(fn) {
      this.#own("transaction");
      native.savepoint();
      let rolledBack = false;
      const txn = Object.create(this);
      txn.rollback = () => {
        rolledBack = true;
      };
      let value;
      try {
        value = await fn(txn);
      } catch (e) {
        native.release(false);
        throw e;
      }
      native.release(!rolledBack);
      return value;
    }
    async sync() {}
    getCurrentBookmark() {
      unsupported("point-in-time recovery bookmarks");
    }
  }

  class DurableObjectState {
    #objectId;
    #id;
    #storage;
    constructor(objectId, name) {
      this.#objectId = objectId;
      this.#id = new DurableObjectId(objectId, name);
      this.#storage = new DurableObjectStorage(objectId);
      this._blockers = [];
    }
    get id() {
      return this.#id;
    }
    get storage() {
      return this.#storage;
    }
    #own(what) {
      native.checkObject(this.#objectId, `ctx.${what}`);
    }
    acceptWebSocket(ws, tags = []) {
      this.#own("acceptWebSocket");
      if (!(ws instanceof WebSocket) || ws._pair === null) throw new TypeError("acceptWebSocket() takes the server end of a WebSocketPair");
      if (ws._id !== null) throw new TypeError("this WebSocket was already accepted");
      const id = native.accept([...tags].map(String));
      ws._id = id;
      ws._object = this.#objectId;
      ws._state = READY.OPEN;
      ws._pair._accepted = true;
      socketsOf(this).set(id, ws);
    }
    getWebSockets(tag) {
      this.#own("getWebSockets");
      return native.websockets(tag === undefined ? null : String(tag)).map((id) => socketFor(this, id));
    }
    getTags(ws) {
      this.#own("getTags");
      if (!(ws instanceof WebSocket) || ws._id === null) throw new TypeError("getTags() takes an accepted WebSocket");
      return native.tags(ws._id);
    }
    setWebSocketAutoResponse(pair) {
      this.#own("setWebSocketAutoResponse");
      if (pair === undefined || pair === null) native.setAutoResponse(null, null);
      else native.setAutoResponse(pair.request, pair.response);
    }
    getWebSocketAutoResponse() {
      this.#own("getWebSocketAutoResponse");
      const pair = native.autoResponse();
      return pair ? new WebSocketRequestResponsePair(pair[0], pair[1]) : null;
    }
    getWebSocketAutoResponseTimestamp(ws) {
      this.#own("getWebSocketAutoResponseTimestamp");
      const ms = native.autoResponseTimestamp(ws._id);
      return ms === null || ms === undefined ? null : new Date(ms);
    }
    setHibernatableWebSocketEventTimeout(ms) {
      this.#own("setHibernatableWebSocketEventTimeout");
      native.setEventTimeout(ms === undefined || ms === null ? 0 : Number(ms));
    }
    getHibernatableWebSocketEventTimeout() {
      this.#own("getHibernatableWebSocketEventTimeout");
      return native.eventTimeout();
    }
    // Torpor runs an object's events one at a time anyway; what this adds
    // is that the object's next event waits for `fn` to finish, as when a
    // constructor starts it without awaiting it (a constructor cannot).
    blockConcurrencyWhile(fn) {
      this.#own("blockConcurrencyWhile");
      const done = (async () => await fn())();
      this._blockers.push(done.catch(() => {}));
      return done;
    }
    waitUntil(promise) {
      Promise.resolve(promise).catch((e) => console.error("waitUntil promise rejected:", e));
    }
    abort(reason) {
      this.#own("abort");
      native.abort(reason === undefined ? "ctx.abort()" : String(reason));
    }
  }
  // The JS WebSocket objects of each instance's state, by handle, so that
  // the same socket is the same JS object for as long as the instance
  // lives (`ws === other` and Maps keyed by socket work as on Cloudflare).
  // Weak: a hibernated instance's sockets go with it.
  const socketMaps = new WeakMap();
  const socketsOf = (state) => {
    let m = socketMaps.get(state);
    if (!m) {
      m = new Map();
      socketMaps.set(state, m);
    }
    return m;
  };
  // Each instance's state, for the dispatch functions below.
  const stateOf = new WeakMap();
  // Waits for what blockConcurrencyWhile started before this event.
  const unblocked = async (instance) => {
    const state = stateOf.get(instance);
    while (state && state._blockers.length) await Promise.all(state._blockers.splice(0));
  };

  // ---- cloudflare:workers ----------------------------------------------
  class DurableObject {
    constructor(ctx, env) {
      this.ctx = ctx;
      this.env = env;
    }
  }
  class WorkerEntrypoint {
    constructor(ctx, env) {
      this.ctx = ctx;
      this.env = env;
    }
  }
  const workers = {
    DurableObject,
    WorkerEntrypoint,
    RpcTarget: class RpcTarget {},
    env: {},
  };

  // ---- what js/object.rs calls -----------------------------------------
  const makeEnv = (vars, namespaces) => {
    const env = {};
    for (const [k, v] of vars) env[k] = v;
    for (const ns of namespaces) env[ns] = new DurableObjectNamespace(ns);
    Object.assign(workers.env, env);
    return env;
  };
  const toRequest = (method, url, headers, body, upgrade) =>
    new Request(url, { method, headers, body: body === null || method === "GET" || method === "HEAD" ? null : body, _upgrade: upgrade });
  const responseParts = (response, what) => {
    if (!(response instanceof Response)) {
      throw new TypeError(`${what} must return a Response (got ${response === null ? "null" : typeof response})`);
    }
    const bytes = response._bytes();
    const ws = response.webSocket;
    return [response.status, response.headers._pairs(), bytes ? toBuffer(bytes) : null, ws ? !!ws._accepted || ws._forwarded === true : false];
  };
  return {
    workers,
    makeEnv,
    construct(Class, objectId, name, env) {
      if (typeof Class !== "function") throw new TypeError(`the app exports no class named as configured`);
      const state = new DurableObjectState(objectId, name);
      const instance = new Class(state, env);
      stateOf.set(instance, state);
      return instance;
    },
    async fetch(instance, method, url, headers, body, upgrade) {
      await unblocked(instance);
      if (typeof instance.fetch !== "function") throw new TypeError("the class has no fetch() method");
      const response = await instance.fetch(toRequest(method, url, headers, body, upgrade));
      return responseParts(response, "fetch()");
    },
    async webSocketMessage(instance, objectId, id, data) {
      await unblocked(instance);
      if (typeof instance.webSocketMessage !== "function") return;
      await instance.webSocketMessage(socketFor(stateOf.get(instance), id), data);
    },
    async webSocketClose(instance, objectId, id, code, reason, wasClean) {
      await unblocked(instance);
      const state = stateOf.get(instance);
      const ws = socketFor(state, id);
      ws._state = READY.CLOSED;
      if (typeof instance.webSocketClose === "function") await instance.webSocketClose(ws, code, reason, wasClean);
      socketsOf(state).delete(id);
    },
    async webSocketError(instance, objectId, id, message) {
      await unblocked(instance);
      if (typeof instance.webSocketError === "function") await instance.webSocketError(socketFor(stateOf.get(instance), id), new Error(message));
    },
    async alarm(instance, retryCount, isRetry) {
      await unblocked(instance);
      if (typeof instance.alarm !== "function") throw new TypeError("an alarm fired but the class has no alarm() method");
      await instance.alarm({ retryCount, isRetry });
    },
    async rpc(instance, method, argsJson) {
      await unblocked(instance);
      const fn = instance[method];
      if (typeof fn !== "function" || method === "constructor" || method.startsWith("#") || ["fetch", "alarm", "webSocketMessage", "webSocketClose", "webSocketError"].includes(method)) {
        throw new TypeError(`the class has no RPC method ${JSON.stringify(method)}`);
      }
      const args = argsJson === "" ? [] : deserialize(argsJson);
      const value = await fn.apply(instance, Array.isArray(args) ? args : [args]);
      return value === undefined ? "" : serialize(value);
    },
    async front(handler, env, method, url, headers, body, upgrade) {
      if (!handler || typeof handler.fetch !== "function") throw new TypeError("the app's default export has no fetch() method");
      const ctx = { waitUntil(p) { Promise.resolve(p).catch((e) => console.error("waitUntil promise rejected:", e)); }, passThroughOnException() {}, props: {} };
      const response = await handler.fetch(toRequest(method, url, headers, body, upgrade), env, ctx);
      return responseParts(response, "the default export's fetch()");
    },
    serialize,
    deserialize,
  };

  function socketFor(state, id) {
    const map = socketsOf(state);
    let ws = map.get(id);
    if (!ws) {
      ws = new WebSocket(TOKEN_PAIR);
      ws._id = id;
      ws._object = state.id.toString();
      ws._state = READY.OPEN;
      map.set(id, ws);
    }
    return ws;
  }
});
