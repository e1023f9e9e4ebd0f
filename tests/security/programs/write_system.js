// Writing to the system from node.
const fs = require('fs');
for (const p of ['/usr/capibox-probe', '/etc/capibox-probe']) {
  try {
    fs.closeSync(fs.openSync(p, 'wx'));
    console.log('create', p, 'WRITABLE');
  } catch (e) {
    console.log('create', p, 'denied');
  }
}
for (const p of ['/etc/passwd', '/usr/bin/node']) {
  try {
    fs.closeSync(fs.openSync(p, 'r+'));
    console.log('open', p, 'WRITABLE');
  } catch (e) {
    console.log('open', p, 'denied');
  }
}
