// Memory bomb, one allocation: 1 GiB filled at once.
const big = Buffer.alloc(1 << 30, 1);
console.log('allocated', big.length);
