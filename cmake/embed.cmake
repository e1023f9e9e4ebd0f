# Turns a text file into a C string constant: cmake -DIN=file -DOUT=header
# -DNAME=symbol -P embed.cmake. Used for the warm runners' scripts, which
# the supervisor writes into each pooled sandbox.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUT}" "/* generated from ${IN}: do not edit */\nstatic const char ${NAME}[] = {${bytes} 0x00};\n")
