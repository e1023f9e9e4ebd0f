// process.kill(-1) and every pid up to 200, and the victim's host pid.
try {
  process.kill(-1, 'SIGKILL');
} catch (e) {}
// our own thread ids are pids in the namespace too: killing one kills us
const own = new Set(require('fs').readdirSync('/proc/self/task').map(Number));
own.add(process.pid);
const targets = [...Array(200).keys()].map((i) => i + 1).concat([Number(process.env.VICTIM_PID)]);
for (const p of targets) {
  if (own.has(p)) continue;
  try {
    process.kill(p, 'SIGKILL');
  } catch (e) {}
}
console.log('attacker done');
