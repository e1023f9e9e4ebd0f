# Memory bomb, one allocation: 1 GiB written at once (b'x' * n touches every
# page, unlike calloc'd memory the kernel would not charge).
big = b'x' * (1 << 30)
print('allocated', len(big))
