// Memory bomb, creeping growth: 1 MiB more per step, each one written.
const held = [];
for (;;) {
  held.push(Buffer.alloc(1 << 20, 7));
  if (held.length % 16 === 0) console.log('holding', held.length, 'MiB');
}
