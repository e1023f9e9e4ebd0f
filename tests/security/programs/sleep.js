// Sleeps past the wall time.
console.log('sleeping');
setTimeout(() => console.log('woke up'), 60000);
