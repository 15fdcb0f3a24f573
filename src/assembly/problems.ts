import type { Log } from "../log.js";

/** Reports a background job's trouble: retry loops repeat their problems, so each is a warning once, then debug lines. */
export type Problem = (message: string, err?: unknown) => void;

export function warnOnce(log: Log): Problem {
  const warned = new Set<string>();
  return (message, err) => {
    const detail = err === undefined ? {} : { err: String(err) };
    if (warned.has(message)) log.debug(detail, message);
    else log.warn(detail, message);
    warned.add(message);
  };
}
