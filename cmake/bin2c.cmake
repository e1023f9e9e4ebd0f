# Turns a binary file into a C array: cmake -DIN=file -DOUT=file.c -DNAME=sym -P bin2c.cmake
# Used to embed the descriptor set that server reflection serves.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n\t" body "${body}")
file(WRITE "${OUT}"
  "/* Generated from ${IN} by cmake/bin2c.cmake; do not edit. */\n"
  "#include <stddef.h>\n#include <stdint.h>\n"
  "extern const uint8_t ${NAME}[];\nextern const size_t ${NAME}_len;\n"
  "const uint8_t ${NAME}[] = {\n\t${body}\n};\n"
  "const size_t ${NAME}_len = ${len};\n")
