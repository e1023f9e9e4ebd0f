// Interop test: a Node.js client (@grpc/grpc-js + @grpc/proto-loader, from
// npm) against the real capiboxd, which test_node.sh starts with API keys.
// The .proto files are loaded at run time from proto/; nothing is generated.
//
// Environment (set by test_node.sh):
//   CAPIBOX_ADDR       host:port of the daemon
//   CAPIBOX_TOKEN      a valid API key's secret
//   CAPIBOX_PROTO_DIR  proto/
// Exit code 0 when every case passed, 1 otherwise (each case prints ok/FAIL).
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const ADDR = process.env.CAPIBOX_ADDR;
const TOKEN = process.env.CAPIBOX_TOKEN;
const PROTO_DIR = process.env.CAPIBOX_PROTO_DIR;
// Generous: a cold sandbox on a loaded 2-core machine takes a while.
const RPC_TIMEOUT_MS = 60000;

// keepCase: the field names of the .proto (stdout_bytes, not stdoutBytes);
// longs as strings: uint64 fields do not fit a JS number in general;
// enums as names: 'REASON_EXITED' reads better than 1 in a failure.
const LOAD_OPTS = {
	keepCase: true,
	longs: String,
	enums: String,
	defaults: true,
	oneofs: true,
	includeDirs: [PROTO_DIR],
};

function load() {
	const def = protoLoader.loadSync(
		['capibox/v1/sandbox.proto', 'grpc/health/v1/health.proto'].map((p) =>
			path.join(PROTO_DIR, p)),
		LOAD_OPTS);
	return grpc.loadPackageDefinition(def);
}

function deadline(ms) {
	return new Date(Date.now() + (ms || RPC_TIMEOUT_MS));
}

function authMd(header) {
	const md = new grpc.Metadata();
	if (header === 'x-api-key')
		md.set('x-api-key', TOKEN);
	else if (header !== 'none')
		md.set('authorization', `Bearer ${TOKEN}`);
	return md;
}

// Runs Execute to the end: resolves {events, stdout, stderr, finished, times}
// or rejects with the gRPC error. times[i] is the arrival of events[i] in ms.
function execute(client, req, md, opts) {
	return new Promise((resolve, reject) => {
		const t0 = Date.now();
		const events = [];
		const times = [];
		const call = client.Execute(req, md, { deadline: deadline(opts && opts.deadlineMs) });
		call.on('data', (resp) => {
			events.push(resp);
			times.push(Date.now() - t0);
		});
		call.on('error', (err) => {
			err.events = events;
			reject(err);
		});
		call.on('end', () => {
			const text = (kind) => Buffer.concat(
				events.filter((e) => e.event === kind).map((e) => e[kind].data)).toString();
			const fin = events.filter((e) => e.event === 'finished');
			resolve({
				events,
				times,
				stdout: text('stdout'),
				stderr: text('stderr'),
				finished: fin.length ? fin[fin.length - 1].finished : null,
			});
		});
	});
}

function unary(client, method, req, md) {
	return new Promise((resolve, reject) => {
		client[method](req, md, { deadline: deadline() }, (err, resp) =>
			err ? reject(err) : resolve(resp));
	});
}

async function expectCode(promise, code, detailsPart) {
	try {
		const r = await promise;
		assert.fail(`expected ${grpc.status[code]}, the call succeeded: ${JSON.stringify(r)}`);
	} catch (err) {
		if (err instanceof assert.AssertionError)
			throw err;
		assert.equal(err.code, code,
			`expected ${grpc.status[code]}, got ${grpc.status[err.code]}: ${err.details}`);
		if (detailsPart)
			assert.match(err.details, detailsPart);
	}
}

async function main() {
	const pkg = load();
	const creds = grpc.credentials.createInsecure();
	const sandbox = new pkg.capibox.v1.SandboxService(ADDR, creds);
	const health = new pkg.grpc.health.v1.Health(ADDR, creds);
	await new Promise((resolve, reject) =>
		sandbox.waitForReady(deadline(10000), (err) => (err ? reject(err) : resolve())));

	const cases = [];
	const test = (name, fn) => cases.push({ name, fn });

	test('Execute streams started, stdout as written, finished (Bearer key)', async () => {
		const code = 'import time\nprint("a")\ntime.sleep(1.5)\nprint("b")\n';
		const r = await execute(sandbox,
			{ language: 'python', code, request_id: 'node-interop-1' }, authMd('bearer'));
		const kinds = r.events.map((e) => e.event);
		assert.equal(kinds[0], 'started', kinds.join(','));
		assert.equal(kinds[kinds.length - 1], 'finished', kinds.join(','));
		assert.equal(kinds.filter((k) => k === 'finished').length, 1, kinds.join(','));
		assert.equal(kinds.filter((k) => k === 'started').length, 1, kinds.join(','));
		const st = r.events[0].started;
		assert.equal(st.language, 'python');
		assert.equal(st.backend, 'local');
		assert.ok(st.sandbox_id.length > 0);
		// Chunk boundaries are arbitrary ("a" and "\n" may come apart): join.
		assert.equal(r.stdout, 'a\nb\n');
		// Streamed live: the chunk with "b" arrives well after the one with "a".
		const at = (needle) => r.times[r.events.findIndex(
			(e) => e.event === 'stdout' && e.stdout.data.toString().includes(needle))];
		assert.ok(at('b') - at('a') > 1000, `a at ${at('a')} ms, b at ${at('b')} ms`);
		assert.equal(r.finished.reason, 'REASON_EXITED');
		assert.equal(r.finished.exit_code, 0);
		assert.equal(r.finished.stdout_bytes, '4');
		assert.ok(Number(r.finished.wall_time_us) > 1500000, r.finished.wall_time_us);
	});

	test('Execute javascript with x-api-key', async () => {
		const r = await execute(sandbox,
			{ language: 'javascript', code: 'console.log(6*7); console.error("e")' },
			authMd('x-api-key'));
		assert.equal(r.stdout, '42\n');
		assert.equal(r.stderr, 'e\n');
		assert.equal(r.finished.reason, 'REASON_EXITED');
	});

	test('Execute: non-zero exit is a finished event, not an error', async () => {
		const r = await execute(sandbox, { language: 'bash', code: 'echo x; exit 3' },
			authMd());
		assert.equal(r.stdout, 'x\n');
		assert.equal(r.finished.reason, 'REASON_EXITED');
		assert.equal(r.finished.exit_code, 3);
	});

	test('Execute: wall-time limit is REASON_WALL_TIMEOUT', async () => {
		const r = await execute(sandbox, {
			language: 'python',
			code: 'import time\ntime.sleep(30)\n',
			limits: { wall_time_ms: 500 },
		}, authMd());
		assert.equal(r.finished.reason, 'REASON_WALL_TIMEOUT');
	});

	test('Execute: client deadline is DEADLINE_EXCEEDED', async () => {
		await expectCode(execute(sandbox,
			{ language: 'python', code: 'import time\ntime.sleep(30)\n' }, authMd(),
			{ deadlineMs: 1500 }), grpc.status.DEADLINE_EXCEEDED);
	});

	test('Execute without a key is UNAUTHENTICATED', async () => {
		await expectCode(execute(sandbox, { language: 'python', code: 'print(1)' },
			authMd('none')), grpc.status.UNAUTHENTICATED, /API key/);
	});

	test('Execute with a wrong key is UNAUTHENTICATED', async () => {
		const md = new grpc.Metadata();
		md.set('authorization', 'Bearer cbx_not-a-key');
		await expectCode(execute(sandbox, { language: 'python', code: 'print(1)' }, md),
			grpc.status.UNAUTHENTICATED, /invalid API key/);
	});

	test('Execute with empty code is INVALID_ARGUMENT naming the field', async () => {
		await expectCode(execute(sandbox, { language: 'python', code: '' }, authMd()),
			grpc.status.INVALID_ARGUMENT, /code/);
	});

	test('Analyze without a dataset is INVALID_ARGUMENT naming it', async () => {
		await expectCode(unary(sandbox, 'Analyze', {}, authMd()), grpc.status.INVALID_ARGUMENT,
			/dataset/);
	});

	test('Health with a key', async () => {
		const resp = await unary(sandbox, 'Health', { deep: false }, authMd());
		assert.equal(resp.status, 'SERVING_STATUS_SERVING', JSON.stringify(resp));
		assert.ok(resp.version.length > 0);
		const local = resp.backends.find((b) => b.name === 'local');
		assert.ok(local, JSON.stringify(resp.backends));
		assert.deepEqual(local.pools.map((p) => p.language).sort(),
			['bash', 'javascript', 'python']);
	});

	test('Health without a key is UNAUTHENTICATED', async () => {
		await expectCode(unary(sandbox, 'Health', {}, authMd('none')),
			grpc.status.UNAUTHENTICATED);
	});

	test('grpc.health.v1 Check answers without a key', async () => {
		for (const service of ['', 'capibox.v1.SandboxService']) {
			const resp = await unary(health, 'Check', { service }, new grpc.Metadata());
			assert.equal(resp.status, 'SERVING', `service "${service}"`);
		}
		await expectCode(unary(health, 'Check', { service: 'no.such.Service' },
			new grpc.Metadata()), grpc.status.NOT_FOUND);
	});

	let failed = 0;
	for (const c of cases) {
		const t0 = Date.now();
		try {
			await c.fn();
			console.log(`ok   ${c.name} (${Date.now() - t0} ms)`);
		} catch (err) {
			failed++;
			console.log(`FAIL ${c.name}\n     ${err && err.stack ? err.stack : err}`);
		}
	}
	sandbox.close();
	health.close();
	console.log(`${cases.length - failed}/${cases.length} passed`);
	return failed ? 1 : 0;
}

main().then((rc) => process.exit(rc), (err) => {
	console.log(`FAIL: ${err && err.stack ? err.stack : err}`);
	process.exit(1);
});
