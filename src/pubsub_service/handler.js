// Wraps a subscriber's handler: messages arrive as [payload, channel, pattern]; with
// `json`, the payload is parsed first. A handler that throws (or rejects) never ends the
// subscription: the error goes to `onError`, or becomes a process warning.
/** @typedef {(message: unknown, channel: string, pattern: string | undefined) => unknown} Handler */
/** @typedef {(error: unknown, channel: string) => void} OnError */
/** @type {(handler: Handler, json: boolean, onError: OnError | null | undefined) => (message: [string, string, string | null]) => void} */ (
  function wrapHandler(handler, json, onError) {
    /** @type {OnError} */
    const report = (error, channel) => {
      if (onError) {
        try {
          onError(error, channel);
        } catch {}
      } else {
        const detail = error instanceof Error && error.stack ? error.stack : String(error);
        process.emitWarning(`a handler of channel ${JSON.stringify(channel)} threw: ${detail}`, {
          type: 'NestjsRedisNativeWarning',
        });
      }
    };
    return ([payload, channel, pattern]) => {
      try {
        const message = json ? JSON.parse(payload) : payload;
        const result = /** @type {{ catch?: unknown } | null | undefined} */ (handler(message, channel, pattern || undefined));
        if (result && typeof result.catch === 'function') result.catch((/** @type {unknown} */ error) => report(error, channel));
      } catch (error) {
        report(error, channel);
      }
    };
  }
);
