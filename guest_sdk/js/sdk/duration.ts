/**
 * Durations as Cloudflare Workflows spells them: milliseconds, or "<n> <unit>"
 * strings such as "10 seconds", "1 day", "2.5 hours".
 */
import type { WorkflowDuration } from "../dynamic-workflows";

const UNIT_MS: Record<string, number> = {
  millisecond: 1, ms: 1, second: 1000, minute: 60_000, hour: 3_600_000, day: 86_400_000,
  week: 7 * 86_400_000, month: 30 * 86_400_000, year: 365 * 86_400_000,
};

const PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$/i;

function unitMs(label: string): number | undefined {
  const unit = label.toLowerCase();
  return UNIT_MS[unit] ?? (unit.endsWith("s") ? UNIT_MS[unit.slice(0, -1)] : undefined);
}

/** Milliseconds in `duration`; a TypeError naming `what` if it is not a duration. */
export function toMilliseconds(duration: WorkflowDuration, what: string): number {
  if (typeof duration === "number") {
    if (Number.isFinite(duration) && duration >= 0) return Math.round(duration);
  } else if (typeof duration === "string") {
    const match = PATTERN.exec(duration);
    const unit = match ? unitMs(match[2]) : undefined;
    if (match && unit !== undefined) return Math.round(Number(match[1]) * unit);
  }
  throw new TypeError(`${what} must be milliseconds (a number >= 0) or a duration such as `
    + `"10 seconds", "5 minutes" or "1 day" (units: millisecond, second, minute, hour, day, `
    + `week, month, year), not ${JSON.stringify(duration)}`);
}
