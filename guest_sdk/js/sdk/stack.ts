/**
 * Stack traces in the tenant's own .ts lines. `dwf build` appends the bundle's
 * source map (esbuild's, without sources' contents) as `__dwf_sourcemap`;
 * frames that point into the bundle are mapped back through it when an error
 * is reported (never on the hot path), and the SDK's own frames are left out.
 */

interface SourceMap {
  readonly sources: readonly string[];
  readonly mappings: string;
}

/** Per generated line: [generated column, source index, source line, source column]. */
type Segment = [number, number, number, number];

const SDK_PREFIX = "dynamic-workflows/";
const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
let decoded: { map: SourceMap; lines: Segment[][] } | null | undefined;

function decodeVlq(text: string, at: { i: number }): number {
  let value = 0;
  let shift = 0;
  for (;;) {
    const digit = BASE64.indexOf(text[at.i++]);
    value += (digit & 31) * 2 ** shift;
    shift += 5;
    if (!(digit & 32)) break;
  }
  return value % 2 ? -(value - 1) / 2 : value / 2;
}

function sourceMap(): { map: SourceMap; lines: Segment[][] } | null {
  if (decoded !== undefined) return decoded;
  const map = (globalThis as { __dwf_sourcemap?: SourceMap }).__dwf_sourcemap;
  if (!map) return (decoded = null);
  const lines: Segment[][] = [];
  let source = 0;
  let line = 0;
  let column = 0;
  for (const group of map.mappings.split(";")) {
    const segments: Segment[] = [];
    let generated = 0;
    for (const text of group.split(",")) {
      if (!text) continue;
      const at = { i: 0 };
      generated += decodeVlq(text, at);
      if (at.i >= text.length) continue;
      source += decodeVlq(text, at);
      line += decodeVlq(text, at);
      column += decodeVlq(text, at);
      segments.push([generated, source, line, column]);
    }
    lines.push(segments);
  }
  return (decoded = { map, lines });
}

/** "file.ts:line:column" for a 1-based bundle line and column, or null. */
function original(line: number, column: number): string | null {
  const found = sourceMap();
  const segments = found?.lines[line - 1];
  if (!found || !segments?.length) return null;
  let best = segments[0];
  for (const segment of segments) {
    if (segment[0] > column - 1) break;
    best = segment;
  }
  return `${found.map.sources[best[1]]}:${best[2] + 1}:${best[3] + 1}`;
}

const FRAME = /^(\s*at\s+)(.*?)\s*\(?bundle\.js:(\d+)(?::(\d+))?\)?\s*$/;

/** An error's stack with bundle positions mapped to the tenant's sources. */
export function mapStack(stack: string): string {
  const lines: string[] = [];
  for (const line of stack.split("\n")) {
    const frame = FRAME.exec(line);
    if (!frame) {
      if (line.trim()) lines.push(line);
      continue;
    }
    const where = original(Number(frame[3]), Number(frame[4] ?? 1));
    if (where?.startsWith(SDK_PREFIX)) continue;
    const name = frame[2] || "<anonymous>";
    lines.push(`${frame[1]}${name} (${where ?? `bundle.js:${frame[3]}:${frame[4] ?? 1}`})`);
  }
  return lines.join("\n");
}

/** A thrown value as an error map: its name, and its message with the mapped stack. */
export function describeError(thrown: unknown): { name: string; message: string } {
  if (thrown instanceof Error) {
    const stack = typeof thrown.stack === "string" ? mapStack(thrown.stack) : "";
    return { name: thrown.name || "Error", message: stack ? `${thrown.message}\n${stack}` : thrown.message };
  }
  return { name: "Error", message: `a non-Error value was thrown: ${String(thrown)}` };
}
