/**
 * URL and URLSearchParams, enough for a fetch handler's routing: absolute
 * http(s) URLs (and paths against a base), their parts, and query parameters.
 * QuickJS has neither.
 */

function decode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "));
  } catch {
    return text;
  }
}

function encode(text: string): string {
  return encodeURIComponent(text).replace(/%20/g, "+");
}

export class URLSearchParams implements Iterable<[string, string]> {
  private list: [string, string][] = [];
  private readonly onChange?: () => void;

  constructor(init?: string | Record<string, string> | [string, string][], onChange?: () => void) {
    if (typeof init === "string") {
      for (const part of init.replace(/^\?/, "").split("&")) {
        if (!part) continue;
        const at = part.indexOf("=");
        this.list.push(at < 0 ? [decode(part), ""] : [decode(part.slice(0, at)), decode(part.slice(at + 1))]);
      }
    } else if (Array.isArray(init)) {
      this.list = init.map(([k, v]) => [String(k), String(v)]);
    } else if (init) {
      this.list = Object.entries(init).map(([k, v]) => [k, String(v)]);
    }
    this.onChange = onChange;
  }

  get(name: string): string | null {
    return this.list.find(([k]) => k === name)?.[1] ?? null;
  }
  getAll(name: string): string[] {
    return this.list.filter(([k]) => k === name).map(([, v]) => v);
  }
  has(name: string): boolean {
    return this.list.some(([k]) => k === name);
  }
  set(name: string, value: string): void {
    const at = this.list.findIndex(([k]) => k === name);
    if (at < 0) {
      this.list.push([name, String(value)]);
    } else {
      this.list[at] = [name, String(value)];
      this.list = this.list.filter(([k], i) => k !== name || i === at);
    }
    this.onChange?.();
  }
  append(name: string, value: string): void {
    this.list.push([name, String(value)]);
    this.onChange?.();
  }
  delete(name: string): void {
    this.list = this.list.filter(([k]) => k !== name);
    this.onChange?.();
  }
  entries(): IterableIterator<[string, string]> {
    return this.list.map(([k, v]): [string, string] => [k, v])[Symbol.iterator]();
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
  toString(): string {
    return this.list.map(([k, v]) => `${encode(k)}=${encode(v)}`).join("&");
  }
}

const ABSOLUTE = /^([a-z][a-z0-9+.-]*:)\/\/([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/i;

export class URL {
  readonly protocol: string;
  readonly host: string;
  pathname: string;
  hash: string;
  readonly searchParams: URLSearchParams;
  private query: string;

  constructor(url: string, base?: string) {
    let match = ABSOLUTE.exec(String(url));
    if (!match && base !== undefined) {
      const root = new URL(base);
      const text = String(url);
      const path = text.startsWith("/") ? text
        : text.startsWith("?") || text.startsWith("#") ? root.pathname + text
        : root.pathname.replace(/[^/]*$/, "") + text;
      match = ABSOLUTE.exec(`${root.protocol}//${root.host}${path}`);
    }
    if (!match) throw new TypeError(`Invalid URL: ${String(url)}`);
    this.protocol = match[1].toLowerCase();
    this.host = match[2].toLowerCase();
    this.pathname = match[3] || "/";
    this.query = match[4] ?? "";
    this.hash = match[5] ?? "";
    this.searchParams = new URLSearchParams(this.query, () => {
      const text = this.searchParams.toString();
      this.query = text ? `?${text}` : "";
    });
  }

  get hostname(): string {
    return this.host.replace(/:\d+$/, "");
  }
  get port(): string {
    return /:(\d+)$/.exec(this.host)?.[1] ?? "";
  }
  get origin(): string {
    return `${this.protocol}//${this.host}`;
  }
  get search(): string {
    return this.query.length > 1 ? this.query : "";
  }
  get href(): string {
    return `${this.origin}${this.pathname}${this.search}${this.hash}`;
  }
  toString(): string {
    return this.href;
  }
  toJSON(): string {
    return this.href;
  }
}
