/**
 * Headers, Request and Response, close to the web standard, for the tenant's
 * fetch handler (`export default { async fetch(request, env) }`): the host's
 * request map becomes a Request, the handler's Response becomes the response
 * map (guest_sdk/proposals/0001-fetch-handlers.md).
 */
import { native } from "./native";

type HeadersInit = Headers | Record<string, string> | [string, string][];
type BodyInit = string | Uint8Array | ArrayBuffer | null | undefined;

export class Headers implements Iterable<[string, string]> {
  private readonly map = new Map<string, string>();

  constructor(init?: HeadersInit) {
    if (init instanceof Headers) init.forEach((value, name) => this.append(name, value));
    else if (Array.isArray(init)) for (const [name, value] of init) this.append(name, value);
    else if (init) for (const [name, value] of Object.entries(init)) this.append(name, value);
  }

  get(name: string): string | null {
    return this.map.get(name.toLowerCase()) ?? null;
  }
  has(name: string): boolean {
    return this.map.has(name.toLowerCase());
  }
  set(name: string, value: string): void {
    this.map.set(name.toLowerCase(), String(value));
  }
  append(name: string, value: string): void {
    const key = name.toLowerCase();
    const old = this.map.get(key);
    this.map.set(key, old === undefined ? String(value) : `${old}, ${value}`);
  }
  delete(name: string): void {
    this.map.delete(name.toLowerCase());
  }
  forEach(callback: (value: string, name: string, headers: Headers) => void): void {
    for (const [name, value] of this.map) callback(value, name, this);
  }
  entries(): IterableIterator<[string, string]> {
    return this.map.entries();
  }
  keys(): IterableIterator<string> {
    return this.map.keys();
  }
  values(): IterableIterator<string> {
    return this.map.values();
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.map.entries();
  }
}

function toBytes(body: BodyInit): Uint8Array {
  if (body === null || body === undefined) return new Uint8Array(0);
  if (typeof body === "string") return native.utf8Encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  throw new TypeError("a body must be a string, Uint8Array, ArrayBuffer or null");
}

/** What Request and Response share: a body read as text, JSON or bytes. */
abstract class Body {
  protected readonly bodyBytes: Uint8Array;

  protected constructor(body: BodyInit) {
    this.bodyBytes = toBytes(body);
  }

  async text(): Promise<string> {
    return native.utf8Decode(this.bodyBytes);
  }
  async json<T = unknown>(): Promise<T> {
    return JSON.parse(native.utf8Decode(this.bodyBytes)) as T;
  }
  async bytes(): Promise<Uint8Array> {
    return this.bodyBytes.slice();
  }
  async arrayBuffer(): Promise<ArrayBuffer> {
    return this.bodyBytes.slice().buffer as ArrayBuffer;
  }
}

export interface RequestInit {
  method?: string;
  headers?: HeadersInit;
  body?: BodyInit;
}

export class Request extends Body {
  readonly method: string;
  readonly url: string;
  readonly headers: Headers;

  constructor(url: string, init: RequestInit = {}) {
    super(init.body);
    this.url = String(url);
    this.method = (init.method ?? "GET").toUpperCase();
    this.headers = new Headers(init.headers);
  }
}

export interface ResponseInit {
  status?: number;
  statusText?: string;
  headers?: HeadersInit;
}

export class Response extends Body {
  readonly status: number;
  readonly statusText: string;
  readonly headers: Headers;
  /** Where an outbound response came from (after redirects); "" for one made here. */
  readonly url: string = "";

  constructor(body?: BodyInit, init: ResponseInit = {}) {
    super(body);
    this.status = init.status ?? 200;
    if (!Number.isInteger(this.status) || this.status < 200 || this.status > 599) {
      throw new RangeError(`a Response status must be an integer from 200 to 599, not ${this.status}`);
    }
    this.statusText = init.statusText ?? "";
    this.headers = new Headers(init.headers);
    if (typeof body === "string" && !this.headers.has("content-type")) {
      this.headers.set("content-type", "text/plain; charset=utf-8");
    }
  }

  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  static json(data: unknown, init: ResponseInit = {}): Response {
    const headers = new Headers(init.headers);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
    return new Response(JSON.stringify(data), { ...init, headers });
  }

  static redirect(url: string, status = 302): Response {
    return new Response(null, { status, headers: { location: String(url) } });
  }

  /** A response fetch() received: any status the remote sent, and its final URL. */
  static received(status: number, url: string, headers: Record<string, string>,
                  body: Uint8Array): Response {
    const response = new Response(body, { headers });
    Object.defineProperties(response, { status: { value: status }, url: { value: url } });
    return response;
  }

  /** The response map the host expects from dwf_fetch. */
  toHost(): { status: number; headers: Record<string, string>; body: Uint8Array } {
    return { status: this.status, headers: Object.fromEntries(this.headers), body: this.bodyBytes };
  }
}

/** The host's request map (ABI.md, Fetch handlers). */
export interface HostRequest {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  body: Uint8Array | null;
  request_id: string;
}

export function requestFromHost(raw: HostRequest): Request {
  const host = raw.headers.host || "localhost";
  const url = `http://${host}${raw.path}${raw.query ? `?${raw.query}` : ""}`;
  return new Request(url, { method: raw.method, headers: raw.headers, body: raw.body });
}
