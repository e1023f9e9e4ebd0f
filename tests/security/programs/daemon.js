// A detached child in its own session that keeps our stdout open: the run
// must still end when this program exits, and the child must die with it.
const cp = require('child_process');
// The test looks for "sleep $DAEMON_MARK" on the host after the run.
const mark = process.env.DAEMON_MARK;
const c = cp.spawn('/bin/sh', ['-c', `trap "" TERM HUP INT; sleep ${mark}; sleep ${mark}`],
                   {detached: true, stdio: ['ignore', 'inherit', 'inherit']});
c.unref();
setTimeout(() => console.log('daemonised'), 300);
setTimeout(() => {}, 800);
