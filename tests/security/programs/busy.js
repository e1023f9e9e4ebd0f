// Busy loop.
for (;;) {}
