import net from 'node:net';

/**
 * The process itself. Under --experimental-vm-modules jest gives a test file
 * its own copy of `process`, whose listeners the real process never calls
 * (`process.on('warning')` hears nothing); a function made by a Node core
 * module's realm sees the real one.
 */
export const realProcess = new (net.Socket.constructor as FunctionConstructor)('return process')() as NodeJS.Process;

/** Every warning the real process emits from now until `stop()`. */
export function collectWarnings(): { warnings: Error[]; stop(): void } {
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  realProcess.on('warning', onWarning);
  return { warnings, stop: () => realProcess.off('warning', onWarning) };
}

/** The messages of the MaxListenersExceededWarnings among `warnings`. */
export function listenerLeaks(warnings: Error[]): string[] {
  return warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning').map((warning) => warning.message);
}
