// capibox runner for javascript (node).
//
// Warm (no argument): started by a pooled sandbox ahead of any request:
// node is up and waiting on descriptor 3 for the one execution it will
// become. The sandbox's init writes, once, the code's path and the
// request's environment (path "\n", byte length "\n", then NAME=VALUE
// entries each ended by NUL) and closes the pipe. Cold (`node runner.js
// PATH`): a sandbox made for the request runs the code at PATH at once.
// Either way this process then runs the code as `node path` would: as the
// main module, argv[1] the path, the working directory /home/user.
//
// No final-expression result here: a CommonJS module has no completion
// value, and running the code as a script instead would change its
// semantics (module scope, require, top-level this).
//
// Session (warm, CAPIBOX_SESSION in the take's environment, set by the
// server and removed here): a loop over cells the server writes to stdin
// (frames: u32 length, u8 type, payload; 'C' a cell), each run as a script
// in this one context, so globals persist; the value of its last
// expression comes back as a result ('R'), and an 'E' frame (i32 exit code,
// u64 CPU microseconds) ends each cell. See runSession.
'use strict';
let path;
let sessionMode = false;
if (process.argv.length > 2) {
  path = process.argv[2];
  process.argv.splice(1, 2, path);
} else {
  const fs = require('fs');
  const chunks = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    let n;
    try {
      n = fs.readSync(3, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN' || e.code === 'EINTR') continue;
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  fs.closeSync(3);
  const data = Buffer.concat(chunks);
  if (data.length === 0) process.exit(0); // the pool let this sandbox go unused
  const nl1 = data.indexOf(10);
  const nl2 = data.indexOf(10, nl1 + 1);
  path = data.subarray(0, nl1).toString();
  const length = Number(data.subarray(nl1 + 1, nl2).toString());
  const env = data.subarray(nl2 + 1, nl2 + 1 + length);
  let start = 0;
  for (let i = 0; i <= env.length; i++) {
    if (i === env.length || env[i] === 0) {
      const entry = env.subarray(start, i).toString();
      const eq = entry.indexOf('=');
      if (eq > 0 && entry.slice(0, eq) === 'CAPIBOX_SESSION') sessionMode = true;
      else if (eq > 0) process.env[entry.slice(0, eq)] = entry.slice(eq + 1);
      start = i + 1;
    }
  }
  process.argv[1] = path;
}
process.chdir('/home/user');
if (sessionMode) runSession();
else require('module').runMain();

// The session loop. A cell's wall and CPU limits bound its synchronous
// part (vm's timeout; CPU is approximated by the time it runs, as one
// thread of JavaScript); a promise it evaluates to is awaited, bounded by
// the server's wall clock (which restarts the session when it does not
// settle in time).
function runSession() {
  const fs = require('fs');
  const vm = require('vm');
  const util = require('util');
  const Module = require('module');
  const EVENTS = 4;
  let pending = Buffer.alloc(0);
  const cells = [];
  let busy = false;
  let n = 0;

  globalThis.require = Module.createRequire('/home/user/');
  process.argv = [process.argv[0]];

  function send(kind, payload) {
    const head = Buffer.alloc(5);
    head.writeUInt32LE(payload.length + 1, 0);
    head.write(kind, 4, 'latin1');
    let buf = Buffer.concat([head, payload]);
    while (buf.length > 0) {
      try {
        buf = buf.subarray(fs.writeSync(EVENTS, buf));
      } catch (e) {
        if (e.code !== 'EAGAIN' && e.code !== 'EINTR') process.exit(1);
      }
    }
  }

  function result(value) {
    let json = null;
    let text;
    try {
      text = util.inspect(value);
    } catch (e) {
      return;
    }
    try {
      const j = JSON.stringify(value);
      if (typeof j === 'string' && j.length <= 262144) json = j;
    } catch (e) {
      json = null;
    }
    if (text.length > 65536) text = text.slice(0, 65536) + '...';
    send('R', Buffer.from(JSON.stringify({text, json, mime_type: 'text/plain'})));
  }

  async function runCell(body) {
    const wallMs = body.readUInt32LE(0);
    const cpuMs = body.readUInt32LE(4);
    const nFiles = body.readUInt32LE(8);
    let off = 12;
    let code = 0;
    try {
      for (let i = 0; i < nFiles; i++) {
        const plen = body.readUInt16LE(off);
        const rel = body.subarray(off + 2, off + 2 + plen).toString();
        off += 2 + plen;
        const mode = body.readUInt32LE(off);
        const size = Number(body.readBigUInt64LE(off + 4));
        off += 12;
        const full = '/home/user/' + rel;
        fs.mkdirSync(require('path').dirname(full), {recursive: true});
        fs.writeFileSync(full, body.subarray(off, off + size), {mode});
        fs.chmodSync(full, mode);
        off += size;
      }
    } catch (e) {
      process.stderr.write('capibox: writing the cell\'s files: ' + e + '\n');
      code = 1;
    }
    const src = body.subarray(off).toString();
    const t0 = process.cpuUsage();
    n += 1;
    if (code === 0) {
      const cpuFirst = cpuMs > 0 && cpuMs < wallMs + 100;
      const timeout = cpuFirst ? cpuMs : wallMs > 0 ? wallMs + 100 : undefined;
      try {
        const script = new vm.Script(src, {filename: `<cell-${n}>`});
        let value = script.runInThisContext({timeout, displayErrors: false});
        if (value !== null && typeof value === 'object' && typeof value.then === 'function') {
          value = await value;
        }
        if (value !== undefined) result(value);
      } catch (e) {
        if (e && e.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT' && cpuFirst) send('T', Buffer.alloc(0));
        let text;
        try {
          text = e && e.stack ? e.stack : String(e);
        } catch (e2) {
          text = 'uncaught exception';
        }
        process.stderr.write('Uncaught ' + text + '\n');
        code = 1;
      }
    }
    const used = process.cpuUsage(t0);
    const end = Buffer.alloc(12);
    end.writeInt32LE(code, 0);
    end.writeBigUInt64LE(BigInt(used.user + used.system), 4);
    send('E', end);
  }

  async function drain() {
    if (busy) return;
    busy = true;
    while (cells.length > 0) await runCell(cells.shift());
    busy = false;
  }

  function onData(chunk) {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5) {
      const len = pending.readUInt32LE(0);
      if (pending.length < 4 + len) break;
      const kind = pending.toString('latin1', 4, 5);
      const body = Buffer.from(pending.subarray(5, 4 + len));
      pending = pending.subarray(4 + len);
      if (kind === 'C') cells.push(body);
      // 'I' (interrupt): the vm timeout has stopped a synchronous cell
      // already; a pending promise is left to the server's clock
    }
    drain();
  }

  const buf = Buffer.alloc(65536);
  function readMore() {
    fs.read(0, buf, 0, buf.length, null, (err, got) => {
      if (err && (err.code === 'EAGAIN' || err.code === 'EINTR')) return setTimeout(readMore, 5);
      if (err || got === 0) process.exit(0); // the server closed the session
      onData(Buffer.from(buf.subarray(0, got)));
      readMore();
    });
  }
  readMore();
}
