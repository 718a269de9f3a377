import winston from 'winston';
import Transport from 'winston-transport';

export interface LogRecord {
  level: string;
  message: string;
  [field: string]: unknown;
}

/** A real winston transport that keeps every record it is given. */
class MemoryTransport extends Transport {
  readonly records: LogRecord[] = [];
  override log(info: LogRecord, done: () => void): void {
    this.records.push(info);
    done();
  }
}

export function captureLogs(level = 'debug'): { logger: winston.Logger; records: LogRecord[] } {
  const transport = new MemoryTransport();
  const logger = winston.createLogger({ level, transports: [transport] });
  return { logger, records: transport.records };
}
