// Disk fill: append 1 MiB at a time to one file per tmpfs until it fails.
const fs = require('fs');
const chunk = Buffer.alloc(1 << 20, 100);
for (const top of ['/home/user', '/tmp']) {
  const fd = fs.openSync(top + '/fill', 'w');
  let code = 'none';
  for (let i = 0; i < 4096; i++) {
    try {
      fs.writeSync(fd, chunk);
    } catch (e) {
      code = e.code;
      break;
    }
  }
  fs.closeSync(fd);
  console.log(top, code);
}
console.log('continued');
