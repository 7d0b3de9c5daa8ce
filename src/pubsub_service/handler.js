// Wraps a subscriber's handler: messages arrive as [payload, channel, pattern]; with
// `json`, the payload is parsed first. A handler that throws (or rejects) never ends the
// subscription: the error goes to `onError`, or becomes a process warning.
(function wrapHandler(handler, json, onError) {
  const report = (error, channel) => {
    if (onError) {
      try {
        onError(error, channel);
      } catch {}
    } else {
      process.emitWarning(`a handler of channel ${JSON.stringify(channel)} threw: ${error && error.stack ? error.stack : error}`, {
        type: 'NestjsRedisNativeWarning',
      });
    }
  };
  return ([payload, channel, pattern]) => {
    try {
      const message = json ? JSON.parse(payload) : payload;
      const result = handler(message, channel, pattern || undefined);
      if (result && typeof result.catch === 'function') result.catch((error) => report(error, channel));
    } catch (error) {
      report(error, channel);
    }
  };
})
