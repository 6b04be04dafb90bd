// Drives Debian's chromium (headless, through playwright-core) through GraphiQL as a user
// would, with every non-loopback destination made unreachable and every attempt recorded:
// opens <base>/graphql, pastes a query into the query editor and runs it with the Headers pane
// empty, then pastes `{"Authorization": "Bearer <jwt>"}` into the Headers pane and runs it
// again, reading the result pane each time; then runs a subscription and records what the
// page's WebSocket said; then opens GraphiQL's dialogs. Prints one JSON object on stdout:
//   { resultWithoutToken, result, headers, query, blocked, requests, pageErrors,
//     consoleErrors, socket, dialogs, control }
// `blocked` lists the non-loopback requests the page attempted (each aborted); `control` is a
// request to another host made on purpose from a blank page, proving the recorder sees them.
// usage: node graphiql.mjs <base-url> <jwt> <query> <subscription> <trigger-mutation> <trigger-jwt>
// (the trigger runs outside the browser once the page subscribed: its event must reach the page)
import { chromium } from 'playwright-core';

const [base, token, query, subscription, trigger, triggerToken] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
const isLoopback = (url) => {
  const u = new URL(url);
  return u.protocol === 'data:' || u.protocol === 'blob:' || LOOPBACK.has(u.hostname);
};

const browser = await chromium.launch({
  executablePath,
  headless: true,
  timeout: 60_000,
  args: [
    // No name resolves, and anything not on loopback goes to a proxy that is not there.
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost',
    '--proxy-server=http://127.0.0.1:9',
    '--proxy-bypass-list=127.0.0.1;localhost',
    '--disable-background-networking',
    '--disable-component-update',
    '--no-first-run',
  ],
});

const out = {
  resultWithoutToken: null,
  result: null,
  headers: null,
  query: null,
  blocked: [],
  requests: [],
  pageErrors: [],
  consoleErrors: [],
  socket: null,
  dialogs: false,
  control: null,
};

// Every request of a context: loopback ones go on, the others are recorded and aborted.
async function guard(context, blocked, requests) {
  await context.route('**/*', (route) => {
    const url = route.request().url();
    requests?.push(url);
    if (isLoopback(url)) return route.continue();
    blocked.push(url);
    return route.abort('blockedbyclient');
  });
}

/** The text a CodeMirror 5 editor under `selector` holds. */
const editorText = (page, selector) =>
  page.$eval(`${selector} .CodeMirror`, (el) => el.CodeMirror.getValue());

/** Clicks into the editor, selects everything and pastes `text`, as a user would. */
async function replaceText(page, selector, text) {
  await page.click(`${selector} .CodeMirror-lines`);
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(text);
  // GraphiQL parses the editor's text after a short debounce (whether to use the WebSocket
  // depends on it); a user's next click comes later than a script's.
  await page.waitForTimeout(700);
}

/** Waits for the result pane to show something new; returns the text on screen. */
async function shownResult(page, before) {
  await page.waitForFunction((previous) => {
    const now = document.querySelector('.result-window .CodeMirror').CodeMirror.getValue();
    return now.trim() !== '' && now.replace(/\s/g, '') !== previous.replace(/\s/g, '');
  }, before);
  // What is on screen (CodeMirror draws it), not only what the editor's model holds.
  return page.$eval('.result-window .CodeMirror-code', (el) =>
    el.innerText.replace(/\u00a0/g, ' '),
  );
}

const HEADERS = 'section.graphiql-editor-tool[aria-label="Headers"] .graphiql-editor:not(.hidden)';
const QUERY = '.graphiql-query-editor';
const RUN = 'button.graphiql-execute-button';

try {
  const context = await browser.newContext();
  await guard(context, out.blocked, out.requests);
  // The page's WebSockets, seen from inside the page (route() does not see them).
  await context.addInitScript(() => {
    const log = (window.__sockets = []);
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(url, protocols) {
        super(url, protocols);
        const entry = { url: String(url), protocol: null, sent: [], received: [], closed: null };
        log.push(entry);
        this.addEventListener('open', () => (entry.protocol = this.protocol));
        this.addEventListener('message', (e) => entry.received.push(String(e.data)));
        this.addEventListener('close', (e) => (entry.closed = e.code));
      }
      send(data) {
        window.__sockets.find((s) => s.url === this.url)?.sent.push(String(data));
        return super.send(data);
      }
    };
  });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (e) => out.pageErrors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && out.consoleErrors.push(m.text()));

  const sockets = () => page.evaluate(() => window.__sockets);

  await page.goto(`${base}/graphql`, { waitUntil: 'load' });
  await page.waitForSelector(`${HEADERS} .CodeMirror`, { state: 'visible' });
  await page.waitForSelector(`${QUERY} .CodeMirror`, { state: 'visible' });

  // First with the Headers pane as it comes (empty), then with the token pasted into it.
  await replaceText(page, QUERY, query);
  out.query = await editorText(page, QUERY);
  await page.click(RUN);
  out.resultWithoutToken = await shownResult(page, '');
  await replaceText(page, HEADERS, `{"Authorization": "Bearer ${token}"}`);
  out.headers = await editorText(page, HEADERS);
  await page.click(RUN);
  out.result = await shownResult(page, out.resultWithoutToken);

  // A subscription from the same page: GraphiQL opens /graphql/ws with the Headers pane as
  // the connection_init payload; wait until the server acknowledged it and took the operation.
  await replaceText(page, QUERY, subscription);
  await page.click(RUN);
  const subscribed = (list) => list.some((s) => s.sent.some((f) => f.includes('"subscribe"')));
  await page.waitForFunction(
    () => window.__sockets.some((s) => s.sent.some((f) => f.includes('"subscribe"'))),
    null,
    { timeout: 10_000 },
  ).catch(() => {});
  // Something happens on the server (from outside the browser): its event must show in the
  // result pane, pushed over the page's socket.
  const beforeEvent = await editorText(page, '.result-window');
  const triggered = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${triggerToken}` },
    body: JSON.stringify({ query: trigger }),
  });
  out.trigger = await triggered.json();
  out.event = await shownResult(page, beforeEvent).catch((e) => `no event: ${e.message}`);
  const list = await sockets();
  for (const s of list) if (!isLoopback(s.url.replace(/^ws/, 'http'))) out.blocked.push(s.url);
  const socket = list[list.length - 1];
  const init = socket?.sent.map((f) => JSON.parse(f)).find((m) => m.type === 'connection_init');
  out.socket = socket && {
    url: socket.url,
    protocol: socket.protocol,
    initPayloadKeys: init ? Object.keys(init.payload ?? {}) : null,
    initCarriesToken: init ? JSON.stringify(init.payload ?? {}).includes(token) : false,
    acknowledged: socket.received.some((f) => f.includes('"connection_ack"')),
    subscribed: subscribed([socket]),
    refused: socket.received.filter((f) => f.includes('"error"')),
    closed: socket.closed,
  };
  await page.click(RUN); // stop the subscription

  // GraphiQL's dialogs open under the page's Content-Security-Policy (a refusal would be a
  // console error).
  for (const dialog of ['Open settings dialog', 'Open short keys dialog']) {
    await page.click(`button[aria-label="${dialog}"]`);
    await page.waitForSelector('[role="dialog"]', { state: 'visible' });
    await page.keyboard.press('Escape');
    await page.waitForSelector('[role="dialog"]', { state: 'detached' });
  }
  out.dialogs = true;
  await context.close();

  // The control: a blank page asks another host for something; the guard must see it.
  const control = await browser.newContext();
  const controlBlocked = [];
  await guard(control, controlBlocked);
  const blank = await control.newPage();
  const fetched = await blank.evaluate(() =>
    fetch('https://registry.npmjs.org/graphiql').then(() => 'loaded', (e) => `failed: ${e}`),
  );
  out.control = { blocked: controlBlocked, fetched };
  await control.close();
} catch (e) {
  out.failure = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
