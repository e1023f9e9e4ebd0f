// capibox runner for javascript (node).
//
// Warm (no argument): started by a pooled sandbox ahead of any request:
// node is up and waiting on descriptor 3 for the one execution it will
// become. The sandbox's init writes, once, the code's path and the
// request's environment (path "\n", byte length "\n", then NAME=VALUE
// entries each ended by NUL) on that socket, which stays open (a session's
// runner asks init there to collect files after a cell). Cold (`node runner.js
// PATH`): a sandbox made for the request runs the code at PATH at once.
// Either way this process then runs the code as `node path` would: as the
// main module, argv[1] the path, the working directory /home/user.
//
// Final-expression result (a notebook's Out[]): when the program's last
// top-level statement is an expression statement (not a directive) whose
// value is not undefined, and the program ends on its own (the event loop
// runs dry: 'beforeExit'), that value, awaited first when it is a
// thenable, goes to the events pipe (descriptor 4, frames read by the
// server: u32 length, u8 type, payload) as an 'R' frame. None when the
// program ends by process.exit() (whatever the code: it did not run to
// its end), an uncaught exception, or a rejection of that promise (which
// stays node's to report); process.exitCode does not matter. The code
// still runs as the CommonJS main module, as `node path` runs it: the
// loader's one read of the file (fs.readFileSync, hooked for that read
// only, so no frame of ours is on the program's stack) gets it with a
// capture of that value inserted (see captureLast: text inserted, no
// line ever moves). The last statement is found with acorn, node's own
// copy, loaded and warmed up before the take when warm; usually only the
// last lines are parsed (see parseTail), a few tenths of a millisecond.
// Anything unexpected (a syntax error, which node then reports as usual;
// the parser missing; the name __capibox_last in the code) leaves the
// source as it is: no result.
//
// Session (warm, CAPIBOX_SESSION in the take's environment, set by the
// server and removed here): a loop over cells the server writes to stdin
// (frames: u32 length, u8 type, payload; 'C' a cell), each run as a script
// in this one context, so globals persist; the value of its last
// expression comes back as a result ('R', the same conversion), and an
// 'E' frame (i32 exit code, u64 CPU microseconds) ends each cell. See
// runSession.
'use strict';
const fs = require('fs');
const util = require('util');

const EVENTS = 4;
const RESULT_NAME = '__capibox_last';
const MAX_FRAME = 1024 * 1024; // the server's limit is 1 MiB plus headers

let acorn = null; // the parser, once loaded (false: it failed to load)

/* Writes one frame to the events pipe; false when that failed. */
function send(kind, payload) {
  const head = Buffer.alloc(5);
  head.writeUInt32LE(payload.length + 1, 0);
  head.write(kind, 4, 'latin1');
  let buf = Buffer.concat([head, payload]);
  while (buf.length > 0) {
    try {
      buf = buf.subarray(fs.writeSync(EVENTS, buf));
    } catch (e) {
      if (e.code !== 'EAGAIN' && e.code !== 'EINTR') return false;
    }
  }
  return true;
}

/*
 * The result frame's payload for value: {text: its util.inspect form, cut
 * at 64 Ki characters; json: JSON.stringify of it when that gives a string
 * of at most 256 Ki characters, else null; mime_type}. null when inspect
 * throws (the value's own custom inspection).
 */
function resultPayload(value) {
  let json = null;
  let text;
  try {
    text = util.inspect(value);
  } catch (e) {
    return null;
  }
  try {
    const j = JSON.stringify(value);
    if (typeof j === 'string' && j.length <= 262144) json = j;
  } catch (e) {
    json = null;
  }
  if (text.length > 65536) text = text.slice(0, 65536) + '...';
  let payload = Buffer.from(JSON.stringify({text, json, mime_type: 'text/plain'}));
  // non-ASCII and escaped quotes can make the text and JSON too big for
  // one frame together: the JSON form goes first
  if (payload.length > MAX_FRAME) {
    payload = Buffer.from(JSON.stringify({text, json: null, mime_type: 'text/plain'}));
  }
  return payload;
}

/*
 * Loads acorn: node's bundled copy (its source, from the list of node's
 * own modules), else Debian's node-acorn; false if neither. About 4 ms,
 * plus as much again for the first parse, so a warm runner does it before
 * its take.
 */
function loadParser() {
  if (acorn !== null) return acorn;
  acorn = false;
  try {
    // process.binding() warns under --pending-deprecation: not our warning
    const warn = process.emitWarning;
    let src;
    process.emitWarning = () => {};
    try {
      src = process.binding('natives')['internal/deps/acorn/acorn/dist/acorn'];
    } finally {
      process.emitWarning = warn;
    }
    const mod = {exports: {}};
    require('vm').compileFunction(src, ['exports', 'module', 'define'],
        {filename: 'acorn.js'})(mod.exports, mod, undefined);
    if (typeof mod.exports.parse === 'function') acorn = mod.exports;
  } catch (e) {
    acorn = false;
  }
  if (acorn === false) {
    try {
      acorn = require('/usr/share/nodejs/acorn/dist/acorn.js');
    } catch (e) {
      acorn = false;
    }
  }
  return acorn;
}

// Expressions that `instanceof` after them takes whole as its left operand
// (they bind at least as tightly as a relational operator).
const TIGHT = new Set(['Identifier', 'Literal', 'TemplateLiteral', 'TaggedTemplateExpression',
  'ThisExpression', 'ArrayExpression', 'ObjectExpression', 'FunctionExpression', 'ClassExpression',
  'MemberExpression', 'CallExpression', 'NewExpression', 'ChainExpression', 'UpdateExpression',
  'UnaryExpression', 'AwaitExpression', 'ParenthesizedExpression', 'MetaProperty', 'ImportExpression']);
const LOOSE_BINARY = new Set(['==', '!=', '===', '!==', '&', '^', '|']);

const PARSE_OPTIONS = {
  ecmaVersion: 'latest',
  sourceType: 'script',
  allowReturnOutsideFunction: true, // the module's body is a function's
  allowHashBang: true,
  preserveParens: true,
};
const WRAPPER_PARAMS = ['exports', 'require', 'module', '__filename', '__dirname'];
// A line starting with one of these may continue the statement before it.
const CONTINUES = new Set(['(', '[', '`', '+', '-', '/', '*', '%', '.', ',', '?', ':', '=', '<', '>',
  '&', '|', '^', '}', ')', ']', '#', '@', '\\']);
const USE_STRICT = /^(?:#![^\n]*)?(?:\s|\/\/[^\n]*|\/\*[\s\S]*?\*\/)*(['"])use strict\1/;

/*
 * The program's last statements, parsed alone: {body, comments, base (where
 * they start in src)} or null. Acorn, not yet compiled to machine code
 * when a program comes, parses about a kilobyte a millisecond, node's own
 * parser (V8's) a hundred times as much: the start of the last statement
 * is looked for from the end, at a line beginning at column 0 with
 * something that cannot continue a statement before it (not `(`, `[`, an
 * operator...); the head before it must compile on its own (V8, as the
 * module's function body), and the tail after it parse on its own. Then
 * the tail's first statement starts there in the whole program too: the
 * head's last statement is complete and its end cannot run on into the
 * tail, except after a bare `let` (`let` newline `x` is a declaration),
 * which is left to the whole parse, as is a head ending in a comment.
 */
function parseTail(src) {
  const strict = USE_STRICT.test(src);
  let tries = 0;
  for (let end = src.length; end > 0;) {
    const k = src.lastIndexOf('\n', end - 1) + 1;
    end = k - 1;
    const c = src[k];
    if (k === 0 || c === undefined || c === ' ' || c === '\t' || c === '\r' || c === '\n' ||
        CONTINUES.has(c)) {
      continue;
    }
    if (++tries > 8 || src.length - k > 16384) return null; // the whole parse, then
    const comments = [];
    let tree;
    try {
      const prefix = strict ? '"use strict";' : '';
      tree = acorn.parse(prefix + src.slice(k), {...PARSE_OPTIONS, onComment: comments});
      if (strict) tree.body.shift();
      if (tree.body.length === 0) return null;
      const base = k - prefix.length;
      let head = src.slice(0, k);
      const last = head.trimEnd();
      const lastLine = last.slice(last.lastIndexOf('\n') + 1);
      if (lastLine.includes('//') || last.endsWith('*/') || /(?:^|[^\w$.])let$/.test(last)) return null;
      if (head.startsWith('#!')) head = '//' + head.slice(2);
      require('vm').compileFunction(head, WRAPPER_PARAMS);
      return {body: tree.body, comments, base};
    } catch (e) {
      // not a statement's start (or the head does not compile): earlier
    }
  }
  return null;
}

/*
 * The program src with the value of its last statement captured, or null
 * when that is not an expression statement (or src does not parse as a
 * CommonJS module body). Only text is inserted, never on a line before
 * one that holds code, so no line moves (the stack traces and the source
 * line node prints for an uncaught exception name the same lines); in
 * order of preference:
 * - `;__capibox_last.v=` (a property, not a variable: an anonymous
 *   function keeps its empty name) at the start of a line lying wholly
 *   between the statement and the one before it (blanks and comments
 *   only): nothing the program shows changes;
 * - a line break and `instanceof __capibox_last` right after the
 *   expression, when it binds tightly enough to be instanceof's left
 *   operand: no token moves, but a `;` or comment after the expression
 *   goes to that new last line;
 * - `;__capibox_last.v=` right after the statement before (or at the
 *   start of the program, after a hashbang line): that line grows at its
 *   end, or, when the expression starts on it, the expression moves right
 *   (`x = 1`, `a || b`, `c ? d : e` alone on the first line).
 * A sequence `a, b` is b's value: its last operand is the one captured.
 */
function captureLast(src) {
  if (!loadParser() || src.includes(RESULT_NAME)) return null;
  const tail = parseTail(src);
  if (tail !== null) {
    const out = insertCapture(src, tail.body, tail.comments, tail.base, true);
    if (out !== undefined) return out;
  }
  const comments = [];
  let tree;
  try {
    tree = acorn.parse(src, {...PARSE_OPTIONS, onComment: comments});
  } catch (e) {
    return null; // node reports the SyntaxError its own way
  }
  return insertCapture(src, tree.body, comments, 0, false);
}

/*
 * captureLast's insertion, the statements body (and comments) parsed from
 * src at base (partial: the program's last ones only): the new source,
 * null when there is nothing to capture, or undefined when the end of the
 * statement before the last one is needed and not known.
 */
function insertCapture(src, body, comments, base, partial) {
  const last = body[body.length - 1];
  if (last === undefined || last.type !== 'ExpressionStatement') return null;
  // a string first in the tail looks like a directive there
  if (typeof last.directive === 'string') return partial ? undefined : null;
  let target = last.expression;
  while (target.type === 'SequenceExpression') target = target.expressions[target.expressions.length - 1];
  const whole = target === last.expression;
  const tight = TIGHT.has(target.type) ||
      (target.type === 'BinaryExpression' && !LOOSE_BINARY.has(target.operator));
  const prev = body.length > 1 ? body[body.length - 2] : null;
  const start = base + last.start;
  const semi = prev !== null || partial ? ';' : ''; // the statement before may end by ASI
  let from = -1; // the end of the statement before, if known
  if (prev !== null) from = base + prev.end;
  else if (!partial) from = src.startsWith('#!') ? src.indexOf('\n') + 1 : 0;
  if (whole && from >= 0) {
    for (let nl = src.indexOf('\n', from); nl >= 0 && nl < start; nl = src.indexOf('\n', nl + 1)) {
      const ls = nl + 1;
      const le = src.indexOf('\n', ls);
      if (le < 0 || le >= start) break; // the statement's own line
      if (comments.some((c) => base + c.start < ls && ls < base + c.end)) continue;
      if (/^[ \t]*-->/.test(src.slice(ls, le))) continue; // an HTML-like comment must stay first
      return src.slice(0, ls) + semi + RESULT_NAME + '.v=' + src.slice(ls);
    }
  } else if (whole && start === base) {
    // the head's last line, when blank, is outside any token of it: it
    // compiles on its own
    const ls = src.lastIndexOf('\n', start - 2) + 1;
    if (/^[ \t\r]*\n$/.test(src.slice(ls, start))) {
      return src.slice(0, ls) + semi + RESULT_NAME + '.v=' + src.slice(ls);
    }
  }
  if (tight) {
    const end = base + target.end;
    return src.slice(0, end) + '\ninstanceof ' + RESULT_NAME + src.slice(end);
  }
  if (!whole) {
    const at = base + target.start;
    return src.slice(0, at) + RESULT_NAME + '.v=' + src.slice(at);
  }
  if (from < 0) return undefined;
  // an assignment has the precedence of any operand of a sequence
  return src.slice(0, from) + semi + RESULT_NAME + '.v=' + src.slice(from);
}

/*
 * Sends value as the run's result when the program ends on its own, after
 * awaiting it when it is a thenable; a promise already rejected gives none
 * (and is left alone: its rejection was node's to report).
 */
function sendAtEnd(value) {
  function atEnd() {
    process.removeListener('beforeExit', atEnd);
    if (value !== null && typeof value === 'object') {
      let then;
      try {
        then = value.then;
      } catch (e) {
        return;
      }
      if (typeof then === 'function') {
        if (util.types.isPromise(value) &&
            /^[^{]*\{ <rejected>/.test(util.inspect(value, {depth: 0, customInspect: false}))) {
          return;
        }
        try {
          then.call(value, (v) => {
            if (v === undefined) return;
            const p = resultPayload(v);
            if (p !== null) send('R', p);
          }, () => {});
        } catch (e) {
          // a thenable whose then() throws: no result
        }
        return;
      }
    }
    const p = resultPayload(value);
    if (p !== null) send('R', p);
  }
  process.on('beforeExit', atEnd);
}

/*
 * Makes the loader's read of the main module (file) return it with its last
 * expression captured. The hook is gone before any of the program runs;
 * the function returned removes it if that read never came (an ES module
 * is loaded another way).
 */
function hookMain(file) {
  const read = fs.readFileSync;
  const want = require('path').resolve(file);
  let real = null;
  fs.readFileSync = function readFileSync(name, options) {
    if (name !== want) {
      if (real === null) {
        try {
          real = fs.realpathSync(want);
        } catch (e) {
          real = want;
        }
      }
      if (name !== real) return Reflect.apply(read, this, arguments);
    }
    fs.readFileSync = read;
    const src = Reflect.apply(read, this, arguments);
    if (typeof src !== 'string') return src;
    const out = captureLast(src);
    if (out === null) return src;
    // __capibox_last: a global that removes itself when read; its value
    // takes the expression's as its property v or by instanceof
    let done = false;
    function capture(v) {
      if (done) return;
      done = true;
      if (v !== undefined) sendAtEnd(v);
    }
    const catcher = Object.create(null);
    Object.defineProperty(catcher, Symbol.hasInstance, {
      value(v) {
        capture(v);
        return false;
      },
    });
    Object.defineProperty(catcher, 'v', {set: capture});
    Object.defineProperty(globalThis, RESULT_NAME, {
      configurable: true,
      enumerable: false,
      get() {
        Reflect.deleteProperty(globalThis, RESULT_NAME); // false if the program froze globalThis
        return catcher;
      },
    });
    return out;
  };
  const hook = fs.readFileSync;
  return () => {
    if (fs.readFileSync === hook) fs.readFileSync = read;
  };
}

// What a warm runner's first parse would otherwise pay on the request path.
const WARM_UP = '#!/usr/bin/env node\n\'use strict\';\nconst fs = require(\'fs\');\n' +
  '/* a comment */\nfunction f(a, b = 2, ...c) { if (a) return [a, b, ...c]; else return {a, b}; }\n' +
  'let x = 1, y = `t${x}`;\nclass K extends Object { #p = 1; static s() { return this; } get g() { return 1; } }\n' +
  'for (const [k, v] of Object.entries({a: 1})) x += v;\ntry { f(x) } catch (e) { x = null ?? 0 } finally { y = 2 }\n' +
  'const g = async () => { await Promise.resolve(x); }; x = x > 1 ? x * 2 : -x / 3; module.exports = {f};\n' +
  'while (false) { break; }\nswitch (x) { case 1: break; default: }\nx?.y, /re+/g.test(y), typeof new K(), f(1, 2) // end\n';

let path;
let sessionMode = false;
let warm = false;
if (process.argv.length > 2) {
  path = process.argv[2];
  process.argv.splice(1, 2, path);
} else {
  warm = true;
  for (let i = 0; i < 3; i++) captureLast(WARM_UP);
  // Then a full collection, now: garbage of the start and the warm-up left
  // for later is collected after the take (a scavenge, about 0.6 ms on
  // the request path), as V8's tasks only run once this thread stops
  // waiting on descriptor 3. The gc function is taken from a context made
  // while --expose-gc is on, and the flag is turned off again, so no
  // context of the program gets one.
  const v8 = require('v8');
  v8.setFlagsFromString('--expose-gc');
  const gc = require('vm').runInNewContext('gc');
  v8.setFlagsFromString('--no-expose-gc');
  gc();
  const buf = Buffer.alloc(65536);
  let data = Buffer.alloc(0);
  let need = -1;
  let nl1 = -1;
  let nl2 = -1;
  while (data.length !== need) {
    let n;
    try {
      n = fs.readSync(3, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN' || e.code === 'EINTR') continue;
      throw e;
    }
    if (n === 0) process.exit(0); // the pool let this sandbox go unused (init is gone)
    data = Buffer.concat([data, buf.subarray(0, n)]);
    nl1 = data.indexOf(10);
    nl2 = nl1 < 0 ? -1 : data.indexOf(10, nl1 + 1);
    if (need < 0 && nl2 >= 0) need = nl2 + 1 + Number(data.subarray(nl1 + 1, nl2).toString());
  }
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
  // the socket to init stays open: a session's runner asks there for files
  // to be collected after a cell (collect in runSession), a one-shot one
  // says there that the program has ended (tellEnd)
}
process.chdir('/home/user');
if (sessionMode) {
  runSession();
} else {
  // from the tick queue, which node drains before its event loop starts,
  // as it would after a main module run directly: so the program's stack
  // ends in node's frames, with none of this file's (the CommonJS main
  // module has run when the next tick, the unhooking, comes)
  process.nextTick(require('module').runMain);
  process.nextTick(hookMain(path));
  if (warm) tellEnd();
}

/*
 * A warm one-shot run tells the sandbox's init when the program has ended,
 * as python.py does: once node has emitted 'exit' (every listener of the
 * program's has run, its output is written: stdout and stderr to pipes are
 * synchronous here), the output descriptors are closed and 'X' and the
 * exit code go on the go socket (descriptor 3). init then ends the run at
 * once; node's own teardown (the isolate, the loop: several milliseconds)
 * comes after `finished`. Not for an uncaught exception (or rejection):
 * node emits 'exit' before it prints the error, so stderr must stay open,
 * and init waits for the reap, as it does when a signal kills node.
 */
function tellEnd() {
  const emit = process.emit;
  let fatal = false;
  process.on('uncaughtExceptionMonitor', () => {
    fatal = true;
  });
  process.emit = function (event, ...args) {
    const r = emit.apply(this, [event, ...args]);
    if (event === 'exit' && !fatal) {
      const code = Number(process.exitCode !== undefined ? process.exitCode : args[0]) | 0;
      for (const fd of [1, 2, EVENTS]) {
        try {
          fs.closeSync(fd);
        } catch (e) {
          // already closed by the program: nothing to end
        }
      }
      try {
        fs.writeSync(3, Buffer.from([0x58, code & 0xff])); // 'X'
      } catch (e) {
        // init waits for the reap instead
      }
    }
    return r;
  };
}

// The session loop. A cell's wall and CPU limits bound its synchronous
// part (vm's timeout; CPU is approximated by the time it runs, as one
// thread of JavaScript); a promise it evaluates to is awaited, bounded by
// the server's wall clock (which restarts the session when it does not
// settle in time).
function runSession() {
  const vm = require('vm');
  const Module = require('module');
  let pending = Buffer.alloc(0);
  const cells = [];
  let busy = false;
  let n = 0;

  globalThis.require = Module.createRequire('/home/user/');
  process.argv = [process.argv[0]];

  // the events pipe gone, so is the session
  function sendOrExit(kind, payload) {
    if (!send(kind, payload)) process.exit(1);
  }

  async function runCell(body) {
    const wallMs = body.readUInt32LE(0);
    const cpuMs = body.readUInt32LE(4);
    const nFiles = body.readUInt32LE(8);
    let off = 12;
    let code = 0;
    const files = [];
    for (let i = 0; i < nFiles; i++) {
      const plen = body.readUInt16LE(off);
      const rel = body.subarray(off + 2, off + 2 + plen).toString();
      off += 2 + plen;
      const mode = body.readUInt32LE(off);
      const size = Number(body.readBigUInt64LE(off + 4));
      off += 12;
      files.push({rel, mode, data: body.subarray(off, off + size)});
      off += size;
    }
    const globs = [];
    const nGlobs = body.readUInt32LE(off);
    off += 4;
    for (let i = 0; i < nGlobs; i++) {
      const glen = body.readUInt16LE(off);
      globs.push(body.subarray(off + 2, off + 2 + glen));
      off += 2 + glen;
    }
    const src = body.subarray(off).toString();
    try {
      for (const f of files) {
        const full = '/home/user/' + f.rel;
        fs.mkdirSync(require('path').dirname(full), {recursive: true});
        fs.writeFileSync(full, f.data, {mode: f.mode});
        fs.chmodSync(full, f.mode);
      }
    } catch (e) {
      process.stderr.write('capibox: writing the cell\'s files: ' + e + '\n');
      code = 1;
    }
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
        if (value !== undefined) {
          const payload = resultPayload(value);
          if (payload !== null) sendOrExit('R', payload);
        }
      } catch (e) {
        if (e && e.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT' && cpuFirst) sendOrExit('T', Buffer.alloc(0));
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
    if (globs.length > 0) collect(globs);
    const used = process.cpuUsage(t0);
    const end = Buffer.alloc(12);
    end.writeInt32LE(code, 0);
    end.writeBigUInt64LE(BigInt(used.user + used.system), 4);
    sendOrExit('E', end);
  }

  // init sends the files matching the cell's collect globs on the events
  // pipe (walking the working directory as after a one-shot run, never
  // following a symlink); its answer comes before our 'E' frame, so the
  // files arrive before the cell's end
  function collect(globs) {
    const body = Buffer.concat(globs.map((g) => Buffer.concat([g, Buffer.alloc(1)])));
    const head = Buffer.alloc(5);
    head.write('G', 0, 'latin1');
    head.writeUInt32LE(body.length, 1);
    let ok = false;
    try {
      let msg = Buffer.concat([head, body]);
      while (msg.length > 0) msg = msg.subarray(fs.writeSync(3, msg));
      const answer = Buffer.alloc(1);
      ok = fs.readSync(3, answer, 0, 1, null) === 1 && answer[0] === 0x6b; // 'k'
    } catch (e) {
      ok = false;
    }
    if (!ok) process.stderr.write('capibox: collecting the cell\'s files failed\n');
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
