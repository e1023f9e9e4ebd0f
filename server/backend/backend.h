/*
 * Backends run executions. The rpc layer sees only this interface; each
 * backend (local.c, later e2b.c) fills a struct backend_ops.
 *
 * Event delivery: a backend calls the sink's callbacks from its own thread,
 * one at a time per execution and always in the order started, then output,
 * result and artifact events as they come, then finished. After each callback the backend delivers nothing more for that
 * execution until the caller calls backend_resume(): the caller sends one
 * message per callback and resumes when the send has completed. That is the
 * backpressure: a slow client stops the reading of the sandbox's pipes.
 * Exactly one finished is delivered for every accepted execution, also after
 * backend_cancel(). started may be skipped when the sandbox never started
 * (then finished carries REASON_SANDBOX_ERROR or REASON_CANCELLED).
 */
#ifndef CAPIBOX_BACKEND_H
#define CAPIBOX_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "exec.h"

struct exec_sink {
	/* Data in the structs is valid only during the callback. */
	void (*started)(void *arg, const struct exec_started *st);
	void (*output)(void *arg, enum exec_stream stream, const uint8_t *data, size_t len);
	void (*finished)(void *arg, const struct exec_result *res);
	/* Optional (NULL: the backend drops these events and goes on at
	 * once, no resume expected): the last expression's value, and the
	 * pieces of files the run produced. */
	void (*result)(void *arg, const struct exec_result_value *r);
	void (*artifact)(void *arg, const struct exec_artifact *a);
};

enum backend_rc {
	BACKEND_OK = 0,
	BACKEND_FULL,	   /* admission cap reached: RESOURCE_EXHAUSTED */
	BACKEND_DRAINING,  /* shutting down: UNAVAILABLE */
	BACKEND_INVALID,   /* request the backend cannot serve: INVALID_ARGUMENT */
	BACKEND_INTERNAL,  /* backend failure: INTERNAL */
	BACKEND_NOT_FOUND, /* no such session (or not the caller's): NOT_FOUND */
};

struct runtime_stats {
	const char *language;
	uint32_t idle;
	uint32_t busy;
	uint32_t target;
	const char *version; /* owned by the backend, lives as long as it */
};

enum backend_status {
	BACKEND_STATUS_SERVING = 1, /* values match capibox.v1.ServingStatus */
	BACKEND_STATUS_DEGRADED = 2,
};

struct backend;
struct exec;

struct backend_ops {
	const char *name;
	enum backend_rc (*execute)(struct backend *b, const struct exec_request *req,
				   const struct exec_sink *sink, void *arg, struct exec **out,
				   char *err, size_t errlen);
	void (*resume)(struct exec *e);
	void (*cancel)(struct exec *e, enum exec_reason reason);
	void (*release)(struct exec *e);
	size_t (*stats)(struct backend *b, struct runtime_stats *out, size_t max);
	void (*cancel_all)(struct backend *b, enum exec_reason reason);
	unsigned (*live)(struct backend *b);
	enum backend_status (*status)(struct backend *b, char *msg, size_t len);
	void (*drain)(struct backend *b);
	void (*destroy)(struct backend *b);
	/* Sessions (NULL: the backend has none; the rpc layer answers
	 * UNIMPLEMENTED). Execute with req->session_id runs in one. */
	enum backend_rc (*session_create)(struct backend *b, const struct session_request *sr,
					  struct session_info *out, char *err, size_t errlen);
	enum backend_rc (*session_close)(struct backend *b, const char *id, const char *owner,
					 struct session_info *out, char *err, size_t errlen);
	size_t (*session_list)(struct backend *b, const char *owner, struct session_info *out,
			       size_t max);
	unsigned (*sessions_open)(struct backend *b);
};

struct backend {
	const struct backend_ops *ops;
};

/* Every implementation's execution handle starts with this. */
struct exec {
	const struct backend_ops *ops;
};

/*
 * Starts an execution of a validated request. On BACKEND_OK *out is a handle
 * the caller owns one reference to (drop it with backend_release() after
 * finished was delivered). Otherwise err holds a message for the client.
 */
__attribute__((warn_unused_result)) static inline enum backend_rc
backend_execute(struct backend *b, const struct exec_request *req, const struct exec_sink *sink,
		void *arg, struct exec **out, char *err, size_t errlen)
{
	return b->ops->execute(b, req, sink, arg, out, err, errlen);
}

/* Allows the next event after the previous callback's message was sent. */
static inline void backend_resume(struct exec *e) { e->ops->resume(e); }

/* Ends the run with reason (if it has not ended); finished still follows. */
static inline void backend_cancel(struct exec *e, enum exec_reason reason)
{
	e->ops->cancel(e, reason);
}

/* Drops the caller's reference; call once, after finished was delivered. */
static inline void backend_release(struct exec *e) { e->ops->release(e); }

/* Per-runtime figures; returns the number of entries written. */
static inline size_t backend_stats(struct backend *b, struct runtime_stats *out, size_t max)
{
	return b->ops->stats(b, out, max);
}

/* Cancels every live execution with reason. */
static inline void backend_cancel_all(struct backend *b, enum exec_reason reason)
{
	b->ops->cancel_all(b, reason);
}

/* Number of executions accepted and not yet finished. */
static inline unsigned backend_live(struct backend *b) { return b->ops->live(b); }

/* The backend's own state (e.g. limits not enforceable) and a description. */
static inline enum backend_status backend_status(struct backend *b, char *msg, size_t len)
{
	return b->ops->status(b, msg, len);
}

/* From now on backend_execute returns BACKEND_DRAINING. */
static inline void backend_drain(struct backend *b) { b->ops->drain(b); }

/* Stops the backend; every execution must have finished. */
static inline void backend_destroy(struct backend *b) { b->ops->destroy(b); }

#endif
