import type { FastifyBaseLogger } from "fastify";
import { pino } from "pino";
import type { LogLevel } from "./config/config.js";

/** The proxy's log: pino, which Fastify's own lines join, made first so that every feature can log from its start. */
export type Log = FastifyBaseLogger;

export function createLog(level: LogLevel): Log {
  return pino({ level });
}
