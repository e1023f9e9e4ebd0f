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
'use strict';
let path;
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
      if (eq > 0) process.env[entry.slice(0, eq)] = entry.slice(eq + 1);
      start = i + 1;
    }
  }
  process.argv[1] = path;
}
process.chdir('/home/user');
require('module').runMain();
