// Endless output in 4 KiB writes (synchronous on a pipe).
const line = 'x'.repeat(4095) + '\n';
for (;;) process.stdout.write(line);
