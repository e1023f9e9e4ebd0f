// Spawn shells that themselves fork forever, until the kernel refuses.
const cp = require('child_process');
let tried = 0, failed = 0, code = 'none';
for (let i = 0; i < 200; i++) {
  tried++;
  try {
    const c = cp.spawn('/bin/sh', ['-c', 'while :; do sleep 60 & done'], {stdio: 'ignore'});
    c.on('error', (e) => { failed++; code = e.code; });
  } catch (e) {
    failed++;
    code = e.code;
  }
}
setTimeout(() => console.log('spawned', tried - failed, 'failed', failed, code), 300);
setTimeout(() => {}, 60000);
