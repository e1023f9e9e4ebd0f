/*
 * capibox-analyze: the Analyze engine as a program, run inside a sandbox.
 *
 *   capibox-analyze [--json] [--threads N] OPTIONS_FILE  < DATASET
 *
 * OPTIONS_FILE holds a serialized capibox.v1.AnalyzeRequest whose
 * dataset.content is empty; the dataset is on fd 0. A regular file there
 * (the daemon's sealed memfd) is mapped read-only, not copied, so its pages
 * are not charged to the sandbox; anything else is read to the end.
 *
 * On success one serialized capibox.v1.AnalyzeResponse (rows, columns,
 * groups) goes to stdout, or with --json the same as JSON, and the exit
 * status is 0. Otherwise one line on stderr and exit 2 (malformed dataset),
 * 3 (unknown column), 4 (aggregate not for the column's type) or 1.
 *
 * For tests and the benchmark the request can also come from flags instead
 * of OPTIONS_FILE (--name, --format, --no-header, --delimiter, --null,
 * --column, --group-by, --agg COL:FN), and --write-options FILE saves the
 * request built from them.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "analyze.h"

#if defined(__SANITIZE_ADDRESS__)
/*
 * In sanitizer builds the engine runs in a sandbox whose seccomp filter
 * refuses ptrace, which LeakSanitizer's end-of-run check needs: it would
 * turn every Analyze into a failure. The program's memory ends with it;
 * the library's own leaks are checked by the fuzz target.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }
#endif

#define MAX_OPTIONS (16u << 20)

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "capibox-analyze: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

/* Reads all of fd into a malloc'd buffer. */
static char *read_all(int fd, size_t *len, size_t max)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);

	if (!buf)
		return NULL;
	for (;;) {
		if (n == cap) {
			if (cap >= max) {
				free(buf);
				errno = EFBIG;
				return NULL;
			}
			cap *= 2;
			char *b = realloc(buf, cap);

			if (!b) {
				free(buf);
				return NULL;
			}
			buf = b;
		}
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*len = n;
	return buf;
}

/* --- JSON (--json): the response as the CLI and the tests read it ------------ */
static json_object *jdouble(double d)
{
	char buf[40];

	if (isnan(d))
		return NULL; /* JSON null */
	if (isinf(d))
		return json_object_new_double_s(d, d > 0 ? "Infinity" : "-Infinity");
	snprintf(buf, sizeof(buf), "%.17g", d);
	return json_object_new_double_s(d, buf);
}

static const char *type_name(Capibox__V1__ColumnType t)
{
	switch (t) {
	case CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_INTEGER: return "INTEGER";
	case CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_FLOAT: return "FLOAT";
	case CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_BOOLEAN: return "BOOLEAN";
	case CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_TEXT: return "TEXT";
	default: return "UNSPECIFIED";
	}
}

static json_object *response_json(const Capibox__V1__AnalyzeResponse *r)
{
	json_object *o = json_object_new_object(), *cols = json_object_new_array();

	json_object_object_add(o, "rows", json_object_new_uint64(r->rows));
	for (size_t i = 0; i < r->n_columns; i++) {
		const Capibox__V1__ColumnSummary *s = r->columns[i];
		json_object *c = json_object_new_object();
		bool numeric = s->type == CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_INTEGER ||
			       s->type == CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_FLOAT;

		json_object_object_add(c, "name", json_object_new_string(s->name));
		json_object_object_add(c, "type", json_object_new_string(type_name(s->type)));
		json_object_object_add(c, "count", json_object_new_uint64(s->count));
		json_object_object_add(c, "nulls", json_object_new_uint64(s->nulls));
		json_object_object_add(c, "distinct", json_object_new_uint64(s->distinct));
		if (numeric) {
			json_object_object_add(c, "mean", jdouble(s->mean));
			json_object_object_add(c, "std", jdouble(s->std));
			json_object_object_add(c, "min", jdouble(s->min));
			json_object_object_add(c, "p25", jdouble(s->p25));
			json_object_object_add(c, "median", jdouble(s->median));
			json_object_object_add(c, "p75", jdouble(s->p75));
			json_object_object_add(c, "max", jdouble(s->max));
			json_object_object_add(c, "sum", jdouble(s->sum));
		} else {
			json_object *top = json_object_new_array();

			for (size_t k = 0; k < s->n_top; k++) {
				json_object *vc = json_object_new_object();

				json_object_object_add(vc, "value",
						       json_object_new_string(s->top[k]->value));
				json_object_object_add(vc, "count",
						       json_object_new_uint64(s->top[k]->count));
				json_object_array_add(top, vc);
			}
			json_object_object_add(c, "top", top);
		}
		json_object_array_add(cols, c);
	}
	json_object_object_add(o, "columns", cols);
	if (r->groups) {
		json_object *g = json_object_new_object(), *names = json_object_new_array(),
			    *rows = json_object_new_array();

		for (size_t i = 0; i < r->groups->n_columns; i++)
			json_object_array_add(names, json_object_new_string(r->groups->columns[i]));
		for (size_t i = 0; i < r->groups->n_rows; i++) {
			const Capibox__V1__Row *row = r->groups->rows[i];
			json_object *jr = json_object_new_array();

			for (size_t k = 0; k < row->n_values; k++) {
				const Capibox__V1__Value *v = row->values[k];
				json_object *jv = NULL;

				if (v->kind_case == CAPIBOX__V1__VALUE__KIND_NUMBER)
					jv = jdouble(v->number);
				else if (v->kind_case == CAPIBOX__V1__VALUE__KIND_TEXT)
					jv = json_object_new_string(v->text);
				json_object_array_add(jr, jv);
			}
			json_object_array_add(rows, jr);
		}
		json_object_object_add(g, "columns", names);
		json_object_object_add(g, "rows", rows);
		json_object_object_add(o, "groups", g);
	}
	return o;
}

/* --- the request from flags (tests, bench) ------------------------------------ */
static const char *const fn_names[] = {"",    "count", "sum",	 "mean",   "min",
				       "max", "std",   "median", "nunique"};

static void push(char ***v, size_t *n, char *s)
{
	char **p = realloc(*v, (*n + 1) * sizeof(*p));

	if (!p)
		die("%s", "out of memory");
	p[(*n)++] = s;
	*v = p;
}

/* What the request flags allocated (their strings are argv's). */
static void flags_free(Capibox__V1__AnalyzeRequest *built, Capibox__V1__Dataset *ds)
{
	for (size_t i = 0; i < built->n_aggregates; i++)
		free(built->aggregates[i]);
	free(built->aggregates);
	free(built->columns);
	free(built->group_by);
	free(ds->null_values);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"threads", required_argument, NULL, 't'},
		{"name", required_argument, NULL, 'n'},
		{"format", required_argument, NULL, 'f'},
		{"no-header", no_argument, NULL, 'H'},
		{"delimiter", required_argument, NULL, 'd'},
		{"null", required_argument, NULL, 'N'},
		{"column", required_argument, NULL, 'c'},
		{"group-by", required_argument, NULL, 'g'},
		{"agg", required_argument, NULL, 'a'},
		{"write-options", required_argument, NULL, 'w'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	Capibox__V1__AnalyzeRequest built = CAPIBOX__V1__ANALYZE_REQUEST__INIT, *req = &built;
	Capibox__V1__Dataset ds = CAPIBOX__V1__DATASET__INIT;
	bool json = false, flags = false;
	long threads = 2;
	const char *write_opts = NULL;
	int opt;

	built.dataset = &ds;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		char *end;

		switch (opt) {
		case 'j': json = true; break;
		case 't':
			errno = 0;
			threads = strtol(optarg, &end, 10);
			if (errno || *end || threads < 1 || threads > 8)
				die("--threads: 1 to 8, not %s", optarg);
			break;
		case 'n': ds.name = optarg, flags = true; break;
		case 'f':
			flags = true;
			if (!strcmp(optarg, "csv"))
				ds.format = CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_CSV;
			else if (!strcmp(optarg, "tsv"))
				ds.format = CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_TSV;
			else if (!strcmp(optarg, "jsonl"))
				ds.format = CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_JSONL;
			else
				die("--format: csv, tsv or jsonl, not %s", optarg);
			break;
		case 'H': ds.no_header = 1, flags = true; break;
		case 'd': ds.delimiter = optarg, flags = true; break;
		case 'N': push(&ds.null_values, &ds.n_null_values, optarg), flags = true; break;
		case 'c': push(&built.columns, &built.n_columns, optarg), flags = true; break;
		case 'g': push(&built.group_by, &built.n_group_by, optarg), flags = true; break;
		case 'a': {
			char *colon = strrchr(optarg, ':');
			size_t f;

			flags = true;
			if (!colon)
				die("--agg: COLUMN:FUNCTION, not %s", optarg);
			*colon = 0;
			for (f = 1; f < sizeof(fn_names) / sizeof(fn_names[0]); f++)
				if (!strcmp(colon + 1, fn_names[f]))
					break;
			if (f == sizeof(fn_names) / sizeof(fn_names[0]))
				die("--agg: unknown function %s", colon + 1);
			Capibox__V1__Aggregate *a = malloc(sizeof(*a));

			if (!a)
				die("%s", "out of memory");
			capibox__v1__aggregate__init(a);
			a->column = optarg;
			a->function = (Capibox__V1__AggregateFunction)f;
			push((char ***)&built.aggregates, &built.n_aggregates, (char *)a);
			break;
		}
		case 'w': write_opts = optarg, flags = true; break;
		default:
			fprintf(stderr,
				"usage: capibox-analyze [--json] [--threads N] OPTIONS_FILE < DATASET\n"
				"       capibox-analyze [--json] [--name N] [--format csv|tsv|jsonl] "
				"[--no-header] [--delimiter D] [--null S]... [--column C]... "
				"[--group-by C]... [--agg C:FN]... [--write-options FILE] < DATASET\n");
			return opt == 'h' ? 0 : 1;
		}
	}
	Capibox__V1__AnalyzeRequest *unpacked = NULL;

	if (optind < argc) {
		if (flags || optind + 1 != argc)
			die("%s", "an OPTIONS_FILE or request flags, not both");
		int fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
		size_t n;
		char *buf;

		if (fd < 0)
			die("cannot open %s", argv[optind]);
		buf = read_all(fd, &n, MAX_OPTIONS);
		close(fd);
		if (!buf)
			die("cannot read %s", argv[optind]);
		unpacked = capibox__v1__analyze_request__unpack(NULL, n, (uint8_t *)buf);
		free(buf);
		if (!unpacked)
			die("%s: not a capibox.v1.AnalyzeRequest", argv[optind]);
		req = unpacked;
	}
	if (write_opts) {
		size_t n = capibox__v1__analyze_request__get_packed_size(req);
		uint8_t *buf = malloc(n ? n : 1);
		int fd = open(write_opts, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (!buf || fd < 0)
			die("cannot write %s", write_opts);
		capibox__v1__analyze_request__pack(req, buf);
		if (write_all(fd, buf, n) < 0 || close(fd) < 0)
			die("cannot write %s", write_opts);
		free(buf);
	}

	/* the dataset: mapped when fd 0 is a regular file (the sealed memfd) */
	struct stat sb;
	const char *data;
	char *owned = NULL;
	size_t len = 0;
	void *map = NULL;

	if (fstat(0, &sb) < 0)
		die("%s", "fstat stdin failed");
	if (S_ISREG(sb.st_mode) && sb.st_size > 0) {
		len = (size_t)sb.st_size;
		map = mmap(NULL, len, PROT_READ, MAP_SHARED, 0, 0);
		if (map == MAP_FAILED)
			die("%s", "cannot map the dataset");
		/* one pass front to back: let the kernel read ahead */
		madvise(map, len, MADV_SEQUENTIAL);
		data = map;
	} else {
		owned = read_all(0, &len, (size_t)1 << 40);
		if (!owned)
			die("%s", "cannot read the dataset");
		data = owned;
	}

	struct analyze_result *res;
	enum analyze_status st = analyze_run(req, data, len, (int)threads, &res);

	if (!res)
		die("%s", "out of memory");
	if (st != ANALYZE_OK) {
		fprintf(stderr, "%s\n", analyze_error(res));
		if (getenv("CAPIBOX_ANALYZE_FREE")) {
			analyze_result_free(res);
			if (unpacked)
				capibox__v1__analyze_request__free_unpacked(unpacked, NULL);
			if (map)
				munmap(map, len);
			free(owned);
			flags_free(&built, &ds);
		}
		return (int)st;
	}
	const Capibox__V1__AnalyzeResponse *resp = analyze_response(res);

	if (json) {
		json_object *o = response_json(resp);
		const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

		if (write_all(1, s, strlen(s)) < 0 || write_all(1, "\n", 1) < 0)
			die("%s", "cannot write stdout");
		json_object_put(o);
	} else {
		size_t n = capibox__v1__analyze_response__get_packed_size(resp);
		uint8_t *buf = malloc(n ? n : 1);

		if (!buf)
			die("%s", "out of memory");
		capibox__v1__analyze_response__pack(resp, buf);
		if (write_all(1, buf, n) < 0)
			die("%s", "cannot write stdout");
		free(buf);
	}
	/* exit frees the rest faster than the frees would */
	if (getenv("CAPIBOX_ANALYZE_FREE")) {
		analyze_result_free(res);
		if (unpacked)
			capibox__v1__analyze_request__free_unpacked(unpacked, NULL);
		if (map)
			munmap(map, len);
		free(owned);
		flags_free(&built, &ds);
	}
	return 0;
}
