// Symlinks to host paths planted by node, and writes through them.
const fs = require('fs');
process.chdir('/home/user');
fs.symlinkSync('/etc/passwd', 'passwd');
fs.symlinkSync(process.env.CANARY, 'canary');
fs.symlinkSync(process.env.STATE_DIR, 'state');
function attempt(what, f) {
  try {
    f();
    console.log(what, 'ok');
  } catch (e) {
    console.log(what, e.code);
  }
}
attempt('append passwd', () => fs.appendFileSync('passwd', 'evil::0:0::/:/bin/sh\n'));
attempt('write canary', () => fs.appendFileSync('canary', 'pwned\n'));
attempt('mkdir state/pwned', () => fs.mkdirSync('state/pwned', {recursive: true}));
console.log(fs.readFileSync('data/in/input.txt', 'utf8').trim());
