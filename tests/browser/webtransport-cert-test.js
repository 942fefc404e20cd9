// Run in a page of the server's own origin (run-page.mjs adds it to the page at URL, which must be
// a real page of the server, e.g. /status: WebTransport fails at once from a document that
// playwright's route interception served, as the .html pages are).
// Open a WebTransport session to https://127.0.0.1:PORT/wt pinned to the SHA-256 given in `hash`
// (serverCertificateHashes), send a ping on one bidirectional stream and read the first line back.
// Leaves {ok, first} or {ok: false, error} in window.railcastResult.
const q = new URLSearchParams(location.search);
const bytes = (hex) => new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
async function run() {
  const url = `https://127.0.0.1:${q.get('port')}/wt?remote_control_id=${q.get('rc')}&access_token=${q.get('token')}`;
  const wt = new WebTransport(url, { serverCertificateHashes: [{ algorithm: 'sha-256', value: bytes(q.get('hash')) }] });
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('not ready within 10 s')), 10000));
  await Promise.race([wt.ready, timeout]);
  const stream = await wt.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify({ type: 'ping', t: 1 }) + '\n'));
  const reader = stream.readable.getReader();
  let text = '';
  while (!text.includes('\n')) {
    const { value, done } = await Promise.race([reader.read(), timeout]);
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  wt.close();
  return { ok: true, first: JSON.parse(text.split('\n')[0]) };
}
run().then((r) => { window.railcastResult = r }, (e) => { window.railcastResult = { ok: false, error: String(e) } });
