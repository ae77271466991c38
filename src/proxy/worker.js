// devserve's shared worker, served at /__devserve/worker.js: one event stream per browser (not
// per tab: six tabs would use up HTTP/1.1's connection limit per host). It relays every event to
// each tab of the origin, and replays to a tab that joins later what devserve replays to a new
// stream: the hello, the failure still standing, the build in progress.
'use strict';

const KINDS = ['hello', 'building', 'ready', 'build-failed', 'crashed'];
const ports = new Set();
let hello = null;
let failure = null;
let building = null;

function send(message) {
  for (const port of ports) port.postMessage(message);
}

function receive(kind, data) {
  if (kind === 'hello') {
    hello = data;
    failure = null;
    building = null;
  } else if (kind === 'building') {
    building = data;
  } else if (kind === 'ready') {
    failure = null;
    building = null;
  } else {
    failure = { kind: kind, data: data };
    building = null;
  }
  send({ kind: kind, data: data });
}

// Until the stream is back, a tab that joins is told nothing (an old hello could be another
// devserve run's).
function down() {
  hello = null;
  failure = null;
  building = null;
  send({ kind: 'down' });
}

function replay(port) {
  if (hello) port.postMessage({ kind: 'hello', data: hello });
  if (failure) port.postMessage(failure);
  if (building) port.postMessage({ kind: 'building', data: building });
}

self.onconnect = (event) => {
  const port = event.ports[0];
  ports.add(port);
  port.onmessage = (message) => {
    if (message.data === 'bye') {
      ports.delete(port);
    } else if (message.data === 'hi') {
      ports.add(port);
      replay(port);
    }
  };
  port.start();
  replay(port);
};

// The stream: `__devserveStream` is stream.js, appended to this script when it is served.
__devserveStream('/__devserve/events', KINDS, receive, down);
