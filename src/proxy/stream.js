
// ---- The event stream (src/proxy/stream.js, appended to client.js and to worker.js when they
// are served; a function declaration, so it is usable from the top of either script and a page
// that loads the client twice only declares it again).
//
// An EventSource that comes back: the browser retries a dropped stream by itself; a stream that
// failed for good (an error answer) is opened again, backing off from 0.5 s to 5 s. Each event of
// `kinds` goes to `onEvent(kind, data)` with its JSON data; `onDown()` when the stream drops.
function __devserveStream(url, kinds, onEvent, onDown) {
  'use strict';
  let delay = 500;
  const open = () => {
    const source = new EventSource(url);
    for (const kind of kinds) {
      source.addEventListener(kind, (event) => {
        delay = 500;
        let data;
        try { data = JSON.parse(event.data); } catch (e) { return; }
        onEvent(kind, data);
      });
    }
    source.onerror = () => {
      onDown();
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 5000);
      }
    };
  };
  open();
}
