# Endless output: the shortest one.
yes capibox
