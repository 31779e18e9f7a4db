/**
 * The sandbox's globals: console to the host log; Date and Math.random from
 * the journaled clock and entropy, so a replay takes the same path; UTF-8
 * TextEncoder/TextDecoder.
 *
 * In workflow code (outside step bodies) `Date.now()` / `new Date()` journal a
 * `now` call named "Date.now", and the first `Math.random()` journals 16 bytes
 * named "Math.random" that seed a xorshift128+ generator. Where the journal
 * cannot be reached (inside a step body, where durable calls cannot nest; in a
 * fetch handler; while the module loads) `Date.now()` is the latest time the
 * guest learned (the instance's creation time, or a later journaled `now`),
 * and Math.random is seeded from that and the instance or request id.
 */
import { LogLevel, native } from "./native";

/** Where the running code is: whether it may make journaled calls now. */
export const context = {
  /** "workflow" inside run(), "fetch" inside a fetch handler, null while loading. */
  mode: null as "workflow" | "fetch" | null,
  /** The step whose body runs now (durable calls cannot nest in it). */
  runningStep: null as string | null,
  /** The instance or request, to seed Math.random where the journal is out of reach. */
  seedText: "",
};

function journalReachable(): boolean {
  return context.mode === "workflow" && context.runningStep === null;
}

function now(): number {
  return journalReachable() ? native.now("Date.now") : native.clock();
}

/* ---- Date ------------------------------------------------------------------ */

const RealDate = Date;
function DwfDate(this: unknown, ...args: unknown[]): unknown {
  if (!new.target) return new RealDate(now()).toString();
  return Reflect.construct(RealDate, args.length ? args : [now()], new.target);
}
DwfDate.prototype = RealDate.prototype;
Object.defineProperties(DwfDate, {
  now: { value: now, writable: true, configurable: true },
  parse: { value: RealDate.parse, writable: true, configurable: true },
  UTC: { value: RealDate.UTC, writable: true, configurable: true },
});
(globalThis as { Date: unknown }).Date = DwfDate;
export { RealDate };

/* ---- Math.random: xorshift128+ over a journaled seed ----------------------- */

let state: [bigint, bigint] | null = null;
const MASK = (1n << 64n) - 1n;

function seedFrom(bytes: Uint8Array): [bigint, bigint] {
  let a = 0n;
  let b = 0n;
  for (let i = 0; i < 8; i++) {
    a = (a << 8n) | BigInt(bytes[i]);
    b = (b << 8n) | BigInt(bytes[8 + i]);
  }
  return [a || 1n, b || 2n];
}

function fallbackSeed(): Uint8Array {
  const text = `${context.seedText}@${native.clock()}`;
  const bytes = new Uint8Array(16);
  let h = 2166136261;
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < text.length; j++) h = Math.imul(h ^ text.charCodeAt(j) ^ i, 16777619);
    bytes[i] = h & 0xff;
  }
  return bytes;
}

function random(): number {
  if (!state) state = seedFrom(journalReachable() ? native.random("Math.random", 16) : fallbackSeed());
  let [s1, s0] = state;
  s1 ^= (s1 << 23n) & MASK;
  s1 ^= s1 >> 17n;
  s1 ^= s0 ^ (s0 >> 26n);
  state = [s0, s1];
  return Number(((s0 + s1) & MASK) >> 11n) / 2 ** 53;
}
Math.random = random;

/** A fresh invocation draws a fresh seed (a module instance serves one invocation). */
export function resetRandom(): void {
  state = null;
}

/* ---- console ----------------------------------------------------------------- */

function show(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function" || typeof value === "symbol" || value === undefined) {
    return String(value);
  }
  try {
    return JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? `${v}n` : v))
      ?? String(value);
  } catch {
    return String(value);
  }
}

function logger(level: number): (...data: unknown[]) => void {
  return (...data) => native.log(level, data.map(show).join(" "));
}

(globalThis as unknown as { console: unknown }).console = {
  log: logger(LogLevel.info),
  info: logger(LogLevel.info),
  debug: logger(LogLevel.debug),
  warn: logger(LogLevel.warning),
  error: logger(LogLevel.error),
};

/* ---- TextEncoder / TextDecoder ------------------------------------------------ */

class TextEncoder {
  readonly encoding = "utf-8";
  encode(input = ""): Uint8Array {
    return native.utf8Encode(String(input));
  }
}

class TextDecoder {
  readonly encoding = "utf-8";
  decode(input?: Uint8Array | ArrayBuffer): string {
    if (input === undefined) return "";
    return native.utf8Decode(input instanceof Uint8Array ? input : new Uint8Array(input));
  }
}

Object.assign(globalThis, { TextEncoder, TextDecoder });
