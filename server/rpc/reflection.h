/*
 * gRPC server reflection (internal to server/rpc/): answers
 * ServerReflectionInfo requests from the descriptor set CMake embeds
 * (protoc --include_imports --descriptor_set_out). v1 and v1alpha share the
 * wire format, so one answer serves both.
 */
#ifndef CAPIBOX_RPC_REFLECTION_H
#define CAPIBOX_RPC_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "grpc/reflection/v1/reflection.pb-c.h"

/* Indexes the embedded descriptor set; fatalx() if it is broken (a build error). */
void reflection_init(void);

/*
 * The answer to one serialized ServerReflectionRequest, or NULL with err
 * when it does not decode. Unknown files and symbols are answered with an
 * error_response (NOT_FOUND), as the protocol wants. Free with
 * reflection_answer_free.
 */
Grpc__Reflection__V1__ServerReflectionResponse *reflection_answer(const uint8_t *req, size_t len,
								  char *err, size_t errlen);
void reflection_answer_free(Grpc__Reflection__V1__ServerReflectionResponse *resp);

#endif
